//! GitHub-flavoured Markdown for CI summaries (`$GITHUB_STEP_SUMMARY`, a merge request note):
//! `--format markdown` of `lint`, `rehearse` and `gate`. Tables, one row per finding, step or
//! gate; cell text escaped so that no value can break the table or inject markup.

/// Text as one table cell: `|` escaped, line breaks as `<br>`, `<`, `>` and `&` as entities,
/// backticks kept out of code spans' way.
pub fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.trim().chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as inline code in a cell (a backtick in it doubles the fence).
pub fn code(text: &str) -> String {
    let fence = if text.contains('`') { "``" } else { "`" };
    format!("{fence}{}{fence}", text.replace('|', "\\|"))
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
    fn no_value_breaks_the_table() {
        assert_eq!(
            cell("a | b\nc <script> & d"),
            "a \\| b<br>c &lt;script&gt; &amp; d"
        );
        assert_eq!(code("x|y"), "`x\\|y`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(
            table(&["A", "B"], &[vec!["1".into(), "2".into()]]),
            "| A | B |\n|---|---|\n| 1 | 2 |\n"
        );
    }
}
