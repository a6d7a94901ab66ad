//! SQL text that the configuration gives and the engines splice into statements of their own: a
//! backfill's `pending` predicate and `set` list, its health queries, a gate check's query.
//!
//! The same characters mean different things to different databases: `#` is an operator on
//! PostgreSQL and a comment on MySQL/MariaDB, `\'` ends a string on PostgreSQL and SQLite but not
//! on MySQL, `$$ -- $$` is a string on PostgreSQL only. A fragment that one reader believes is
//! harmless can comment out the key range and the `pending` guard on another, so every piece of
//! text is read here as each grammar reads it, and must be safe under all of them: the file does
//! not know which database it will meet.

/// How one database family, in one of its modes, tokenizes the text between statements.
#[derive(Clone, Copy, Debug)]
struct Grammar {
    name: &'static str,
    /// `#` starts a comment to the end of the line.
    hash_comments: bool,
    /// `--` starts a comment only before whitespace or the end (MySQL/MariaDB: `--1` is code).
    dashes_need_space: bool,
    /// `/*!` and `/*M!` are not comments: the server runs what they hold.
    executable_comments: bool,
    /// The quotes inside which `\` escapes the next character.
    backslash_in: &'static str,
    /// `$tag$ … $tag$` quotes text (and `E'…'` strings take backslash escapes).
    dollar_quotes: bool,
    /// `/* /* */ */` nests.
    nested_comments: bool,
    /// `[name]` quotes an identifier.
    brackets: bool,
    /// `` `name` `` quotes an identifier.
    backticks: bool,
}

const POSTGRESQL: Grammar = Grammar {
    name: "PostgreSQL",
    hash_comments: false,
    dashes_need_space: false,
    executable_comments: false,
    backslash_in: "",
    dollar_quotes: true,
    nested_comments: true,
    brackets: false,
    backticks: false,
};

const MYSQL: Grammar = Grammar {
    name: "MySQL/MariaDB",
    hash_comments: true,
    dashes_need_space: true,
    executable_comments: true,
    backslash_in: "'\"",
    dollar_quotes: false,
    nested_comments: false,
    brackets: false,
    backticks: true,
};

const SQLITE: Grammar = Grammar {
    name: "SQLite",
    hash_comments: false,
    dashes_need_space: false,
    executable_comments: false,
    backslash_in: "",
    dollar_quotes: false,
    nested_comments: false,
    brackets: true,
    backticks: true,
};

/// Every grammar and mode a fragment must be safe under: PostgreSQL with
/// `standard_conforming_strings` on and off; MySQL/MariaDB by default, with `ANSI_QUOTES` (`"`
/// quotes an identifier, without escapes) and with `NO_BACKSLASH_ESCAPES`; SQLite.
const GRAMMARS: [Grammar; 6] = [
    POSTGRESQL,
    Grammar {
        backslash_in: "'",
        ..POSTGRESQL
    },
    MYSQL,
    Grammar {
        backslash_in: "'",
        ..MYSQL
    },
    Grammar {
        backslash_in: "",
        ..MYSQL
    },
    SQLITE,
];

/// Text as one grammar reads it: each character outside quotes and comments with the
/// parenthesis depth it stands at (a quoted span becomes one space), and what else was seen.
#[derive(Debug, Default)]
struct Reading {
    code: Vec<(char, i32)>,
    /// The opener of the first comment (`--`, `#`, `/*`).
    comment: Option<&'static str>,
    /// A `;` outside quotes and comments, with anything but whitespace after it.
    inner_semicolon: bool,
    /// A `;` outside quotes and comments.
    semicolon: bool,
    /// A quote or a block comment left open at the end.
    unclosed: bool,
    /// A MySQL executable comment (`/*!…*/`, `/*M!…*/`).
    executable: bool,
}

impl Reading {
    fn balanced(&self) -> bool {
        let opened = self.code.iter().filter(|&&(c, _)| c == '(').count();
        let closed = self.code.iter().filter(|&&(c, _)| c == ')').count();
        opened == closed && self.code.iter().all(|&(_, depth)| depth >= 0)
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// The tag of a dollar quote opening at `i` (`$$` -> "", `$x$` -> "x"), if one opens there.
fn dollar_tag(chars: &[char], i: usize) -> Option<String> {
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    let tag: String = chars[i + 1..j].iter().collect();
    let starts_well = tag.chars().next().is_none_or(|c| !c.is_ascii_digit());
    (j < chars.len() && chars[j] == '$' && starts_well).then_some(tag)
}

fn read(text: &str, g: Grammar) -> Reading {
    let chars: Vec<char> = text.chars().collect();
    let mut r = Reading::default();
    let mut depth = 0i32;
    let mut i = 0;
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    };
    while i < chars.len() {
        let c = chars[i];
        let after_word = i > 0 && is_word(chars[i - 1]);
        // Comments.
        let dashes = at(i, "--")
            && (!g.dashes_need_space
                || chars
                    .get(i + 2)
                    .is_none_or(|c| c.is_whitespace() || c.is_control()));
        let line_comment = if dashes {
            Some("--")
        } else if g.hash_comments && c == '#' {
            Some("#")
        } else {
            None
        };
        if let Some(opener) = line_comment {
            r.comment.get_or_insert(opener);
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if g.executable_comments && (at(i, "/*!") || at(i, "/*M!")) {
            // Run by the server: neither a comment nor plain code to check. Refused.
            r.executable = true;
        }
        if at(i, "/*") {
            r.comment.get_or_insert("/*");
            let mut nesting = 1;
            i += 2;
            while i < chars.len() && nesting > 0 {
                if at(i, "*/") {
                    nesting -= 1;
                    i += 2;
                } else if g.nested_comments && at(i, "/*") {
                    nesting += 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            r.unclosed |= nesting > 0;
            continue;
        }
        // Quotes: find where the quoted span ends.
        let close = match c {
            '\'' | '"' => Some(c),
            '`' if g.backticks => Some('`'),
            '[' if g.brackets => Some(']'),
            _ => None,
        };
        if let Some(close) = close {
            let escapes = g.backslash_in.contains(c)
                || (g.dollar_quotes
                    && c == '\''
                    && i > 0
                    && matches!(chars[i - 1], 'e' | 'E')
                    && !(i > 1 && is_word(chars[i - 2])));
            i += 1;
            let mut open = true;
            while i < chars.len() {
                if escapes && chars[i] == '\\' {
                    i += 2;
                    continue;
                }
                if chars[i] == close {
                    // A doubled quote stands for itself, except a bracket's.
                    if close != ']' && chars.get(i + 1) == Some(&close) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    open = false;
                    break;
                }
                i += 1;
            }
            r.unclosed |= open;
            r.code.push((' ', depth));
            continue;
        }
        let tag = (g.dollar_quotes && c == '$' && !after_word)
            .then(|| dollar_tag(&chars, i))
            .flatten();
        if let Some(tag) = tag {
            let delimiter = format!("${tag}$");
            let body = i + delimiter.chars().count();
            let rest: String = chars[body..].iter().collect();
            match rest.find(&delimiter) {
                Some(end) => {
                    i = body + rest[..end].chars().count() + delimiter.chars().count();
                }
                None => {
                    r.unclosed = true;
                    i = chars.len();
                }
            }
            r.code.push((' ', depth));
            continue;
        }
        match c {
            '(' => {
                r.code.push((c, depth));
                depth += 1;
            }
            ')' => {
                depth -= 1;
                r.code.push((c, depth));
            }
            ';' => {
                r.semicolon = true;
                r.code.push((c, depth));
            }
            _ => r.code.push((c, depth)),
        }
        i += 1;
    }
    let last_semicolon = r.code.iter().rposition(|&(c, _)| c == ';');
    r.inner_semicolon = last_semicolon.is_some_and(|at| {
        r.code[at + 1..].iter().any(|&(c, _)| !c.is_whitespace())
            || r.code[..at].iter().any(|&(c, _)| c == ';')
    });
    r
}

/// The grammars (by name, each once) whose reading shows `problem`.
fn names_where(
    readings: &[(Grammar, Reading)],
    problem: impl Fn(&Reading) -> bool,
) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for (g, r) in readings {
        if problem(r) && !names.contains(&g.name) {
            names.push(g.name);
        }
    }
    names
}

fn listed(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Why `fragment`, given as `field`, is not one SQL expression that can be spliced into a
/// statement on every database: a comment, a `;`, a quote left open or a parenthesis that
/// does not close where it opened, under any grammar. `None` when it is safe.
pub fn expression_problem(field: &str, fragment: &str) -> Option<String> {
    let readings: Vec<(Grammar, Reading)> =
        GRAMMARS.iter().map(|&g| (g, read(fragment, g))).collect();
    // A comment first: it is the danger, wherever a quote also reads differently.
    if let Some(opener) = readings.iter().find_map(|(_, r)| r.comment) {
        let on = names_where(&readings, |r| r.comment == Some(opener));
        return Some(format!(
            "`{field}` holds a comment (`{opener}` starts one on {}): it must be one SQL expression",
            listed(&on)
        ));
    }
    if let Some((g, _)) = readings.iter().find(|(_, r)| r.unclosed || !r.balanced()) {
        return Some(format!(
            "`{field}` has unbalanced parentheses or quotes (read as {} reads it): it must be one SQL expression",
            g.name
        ));
    }
    readings
        .iter()
        .any(|(_, r)| r.semicolon)
        .then(|| format!("`{field}` holds a `;`: it must be one SQL expression"))
}

/// Why `query`, given as `field`, cannot be wrapped as one statement on every database: a
/// quote or block comment left open, unbalanced parentheses, a second statement or anything
/// after a final `;`, or a MySQL executable comment. Comments are allowed (the engines close
/// their wrappers on a new line), and so is one `;` at the very end.
pub fn query_problem(field: &str, query: &str) -> Option<String> {
    for g in GRAMMARS {
        let r = read(query, g);
        if r.executable {
            return Some(format!(
                "{field} holds a MySQL/MariaDB executable comment (`/*!` or `/*M!`): the server would run it"
            ));
        }
        if r.unclosed || !r.balanced() {
            return Some(format!(
                "{field} has unbalanced parentheses, quotes or comments (read as {} reads it)",
                g.name
            ));
        }
        if r.inner_semicolon {
            return Some(format!("{field} must be one statement"));
        }
        if r.semicolon && !query.trim_end().ends_with(';') {
            return Some(format!(
                "{field} must be one statement: nothing may follow its final `;`"
            ));
        }
    }
    None
}

/// Whether `word` appears in `fragment` outside quotes, comments and parentheses, as a whole
/// word in any case, under any grammar.
pub fn has_top_level_word(fragment: &str, word: &str) -> bool {
    GRAMMARS.iter().any(|&g| {
        let top: String = read(fragment, g)
            .code
            .iter()
            .map(|&(c, depth)| {
                if depth == 0 && c != '(' && c != ')' {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        top.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w.eq_ignore_ascii_case(word))
    })
}

/// `query` without the `;` (and whitespace) it may end with: the engines wrap it.
pub fn without_final_semicolon(query: &str) -> &str {
    query.trim_end().trim_end_matches(';').trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_in_any_dialect_is_refused_and_named_where_it_is_one() {
        for (fragment, expected) in [
            (
                "a = b, c = c + 1 # copy",
                "`set` holds a comment (`#` starts one on MySQL/MariaDB): it must be one SQL expression",
            ),
            (
                "a = b -- copy",
                "`set` holds a comment (`--` starts one on PostgreSQL, MySQL/MariaDB and SQLite): it must be one SQL expression",
            ),
            (
                "a = /* x */ b",
                "`set` holds a comment (`/*` starts one on PostgreSQL, MySQL/MariaDB and SQLite): it must be one SQL expression",
            ),
            // MySQL ends the string one quote later (`\'` is a quote there): `#` is outside.
            (
                "a = 'x\\'', c = 1 # '",
                "`set` holds a comment (`#` starts one on MySQL/MariaDB): it must be one SQL expression",
            ),
            // With ANSI_QUOTES, `"` quotes an identifier without escapes while `'` keeps them:
            // a mode of its own, where this `#` is outside every quote.
            (
                "a = \"\\\" '\\'' # \" '\\''",
                "`set` holds a comment (`#` starts one on MySQL/MariaDB): it must be one SQL expression",
            ),
            // A dollar quote hides `--` from PostgreSQL only.
            (
                "a = $$ -- $$",
                "`set` holds a comment (`--` starts one on MySQL/MariaDB and SQLite): it must be one SQL expression",
            ),
        ] {
            assert_eq!(
                expression_problem("set", fragment).as_deref(),
                Some(expected),
                "{fragment}"
            );
        }
    }

    #[test]
    fn quoted_text_may_hold_what_it_likes() {
        for fragment in [
            "name = 'a -- b # c /* d ; e'",
            "name = 'it''s'",
            "\"odd--name\" = 'x'",
            "a = 'C:\\path'",
            "(x IS NULL) OR (y = 'a)b')",
            "price$ = 1",
        ] {
            assert_eq!(expression_problem("set", fragment), None, "{fragment}");
        }
    }

    #[test]
    fn quotes_and_parentheses_must_close_under_every_grammar() {
        for fragment in [
            "name = 'open",
            "(a) OR b(",
            "a) OR (b",
            "a = `x",
            "a = 'x\\'",
        ] {
            assert!(
                expression_problem("pending", fragment)
                    .is_some_and(|p| p.contains("unbalanced parentheses or quotes")),
                "{fragment}"
            );
        }
        assert_eq!(
            expression_problem("pending", "a = 1; DROP TABLE t").as_deref(),
            Some("`pending` holds a `;`: it must be one SQL expression")
        );
    }

    #[test]
    fn queries_may_carry_comments_and_one_final_semicolon() {
        for query in [
            "SELECT 0 -- no replica",
            "SELECT 1 /* why */ FROM t;",
            "SELECT count(*) FROM t WHERE a = ';' ;  ",
        ] {
            assert_eq!(query_problem("throttle_query", query), None, "{query}");
        }
        assert_eq!(
            query_problem("throttle_query", "SELECT 1; SELECT 2").as_deref(),
            Some("throttle_query must be one statement")
        );
        assert!(query_problem("throttle_query", "SELECT 1 /* open").is_some());
        // Past a final `;` nothing may follow, a comment neither (the wrapper would break).
        assert_eq!(
            query_problem("throttle_query", "SELECT 1; -- done").as_deref(),
            Some("throttle_query must be one statement: nothing may follow its final `;`")
        );
        // MySQL runs what an executable comment holds; `--1` is code there.
        assert!(
            query_problem("check", "SELECT 1 /*!50000 , 2 */")
                .is_some_and(|p| p.contains("executable comment"))
        );
        assert!(
            query_problem("check", "SELECT 1 --1)")
                .is_some_and(|p| p.contains("read as MySQL/MariaDB"))
        );
        assert!(query_problem("check", "SELECT (1").is_some());
        assert_eq!(without_final_semicolon("SELECT 1 ; \n"), "SELECT 1");
    }

    #[test]
    fn top_level_words_ignore_quotes_comments_and_subqueries() {
        assert!(!has_top_level_word(
            "note = 'where' || where_clause",
            "WHERE"
        ));
        assert!(has_top_level_word("a = b where c", "WHERE"));
        assert!(!has_top_level_word(
            "a = (SELECT x FROM t WHERE t.id = id)",
            "WHERE"
        ));
        // Quoted on PostgreSQL, bare on MySQL: any grammar that sees it counts.
        assert!(has_top_level_word("a = 'x\\'' where '", "WHERE"));
    }
}
