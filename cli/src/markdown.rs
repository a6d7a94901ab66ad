//! GitHub-flavoured Markdown for CI summaries (`$GITHUB_STEP_SUMMARY`, a merge request note):
//! `--format markdown` of `lint`, `rehearse` and `gate`. Tables, one row per finding, step or
//! gate; every value escaped, so that text from a migration (a revision's message, a finding
//! quoting it) can neither break the table nor add links, images or HTML.

/// Text as one table cell. Outside code spans: `|` escaped, line breaks as `<br>`, `<`, `>`
/// and `&` as entities, `[`, `]`, `*`, `_` and `\` escaped (no links, images or emphasis).
/// Inside a code span (balanced backticks), whose text GitHub shows as it is: only `|` (which
/// tables split on even there) and line breaks. Unbalanced backticks are escaped as well.
pub fn cell(text: &str) -> String {
    let text = text.trim();
    let spans = text.matches('`').count().is_multiple_of(2);
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' if spans => {
                in_code = !in_code;
                out.push(c);
            }
            '|' => out.push_str("\\|"),
            '\r' => {}
            '\n' if in_code => out.push(' '),
            '\n' => out.push_str("<br>"),
            _ if in_code => out.push(c),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '[' | ']' | '*' | '_' | '\\' | '`' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` as inline code in a cell: a fence longer than any run of backticks in it, padded
/// when it starts or ends with one; `|` escaped, line breaks as spaces.
pub fn code(text: &str) -> String {
    let longest = text
        .split(|c| c != '`')
        .map(str::len)
        .max()
        .unwrap_or_default();
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    let body = text.replace('|', "\\|").replace(['\r', '\n'], " ");
    format!("{fence}{pad}{body}{pad}{fence}")
}

/// A table: the header row, its rule, then the rows (each already escaped).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_value_breaks_the_table_or_adds_markup() {
        assert_eq!(
            cell("a | b\nc <script> & d"),
            "a \\| b<br>c &lt;script&gt; &amp; d"
        );
        // A link or an image from a revision's message stays text; code spans stay code.
        assert_eq!(
            cell("see ![x](http://t/p.png) and [y](z) *bold* snake_case"),
            "see !\\[x\\](http://t/p.png) and \\[y\\](z) \\*bold\\* snake\\_case"
        );
        assert_eq!(
            cell("`op.get_context().autocommit_block()` | x_y"),
            "`op.get_context().autocommit_block()` \\| x\\_y"
        );
        assert_eq!(cell("a lone ` [x](y)"), "a lone \\` \\[x\\](y)");
        assert_eq!(code("x|y"), "`x\\|y`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`a``"), "``` `a`` ```");
        assert_eq!(code("a\nb"), "`a b`");
        assert_eq!(
            table(&["A", "B"], &[vec!["1".into(), "2".into()]]),
            "| A | B |\n|---|---|\n| 1 | 2 |\n"
        );
    }
}
