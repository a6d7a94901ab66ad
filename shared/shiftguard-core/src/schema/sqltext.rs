//! A small SQL tokenizer for what shiftguard reads from literal SQL: statement boundaries, keywords
//! and identifiers, parenthesis depth. String literals (standard, `E'…'` with backslash escapes,
//! `$tag$…$tag$`) and comments (`--`, nested `/* */`) are skipped, so a `;` or a keyword inside
//! them never counts.

/// A token: a keyword or identifier (upper-cased unless quoted), or one punctuation character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    /// Parentheses around it.
    pub depth: u32,
    /// A quoted identifier (`"Name"`, `` `name` ``): never a keyword.
    pub quoted: bool,
}

impl Token {
    /// An unquoted keyword equal to `word` (upper case).
    pub fn is(&self, word: &str) -> bool {
        !self.quoted && self.text == word
    }
}

/// The statements of `sql` (split at top-level `;`), each as its tokens; empty ones dropped.
pub fn statements(sql: &str) -> Vec<Vec<Token>> {
    let chars: Vec<char> = sql.chars().collect();
    let mut statements = vec![Vec::new()];
    let mut depth = 0u32;
    let mut i = 0;
    let push = |statements: &mut Vec<Vec<Token>>, text: String, depth: u32, quoted: bool| {
        if let Some(statement) = statements.last_mut() {
            statement.push(Token {
                text,
                depth,
                quoted,
            });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ';' if depth == 0 => {
                statements.push(Vec::new());
                i += 1;
            }
            '(' => {
                depth += 1;
                i += 1;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            '\'' => i = skip_string(&chars, i + 1, false),
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut nesting = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        nesting += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        nesting -= 1;
                        i += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            '$' if dollar_tag(&chars, i).is_some() => {
                let tag: Vec<char> = dollar_tag(&chars, i).unwrap_or_default();
                i += tag.len();
                // The body runs to the same tag.
                while i < chars.len() && !chars[i..].starts_with(&tag) {
                    i += 1;
                }
                i = (i + tag.len()).min(chars.len());
            }
            '"' | '`' => {
                let mut text = String::new();
                i += 1;
                while i < chars.len() && chars[i] != c {
                    text.push(chars[i]);
                    i += 1;
                }
                i += 1;
                push(&mut statements, text, depth, true);
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if (word == "E" || word == "e") && chars.get(i) == Some(&'\'') {
                    i = skip_string(&chars, i + 1, true);
                } else {
                    push(&mut statements, word.to_ascii_uppercase(), depth, false);
                }
            }
            c if c.is_whitespace() => i += 1,
            c => {
                push(&mut statements, c.to_string(), depth, false);
                i += 1;
            }
        }
    }
    statements.retain(|s| !s.is_empty());
    statements
}

/// Skips a string literal whose opening quote is before `i`; returns the index after it.
fn skip_string(chars: &[char], mut i: usize, backslash_escapes: bool) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' if backslash_escapes => i += 2,
            '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
            '\'' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// `$$` or `$tag$` starting at `i` (a tag is an identifier not starting with a digit).
fn dollar_tag(chars: &[char], i: usize) -> Option<Vec<char>> {
    let mut end = i + 1;
    while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
        end += 1;
    }
    let valid = chars.get(end) == Some(&'$')
        && chars
            .get(i + 1)
            .is_none_or(|c| !c.is_ascii_digit() || end == i + 1);
    valid.then(|| chars[i..=end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> Vec<Vec<String>> {
        statements(sql)
            .into_iter()
            .map(|s| s.into_iter().map(|t| t.text).collect())
            .collect()
    }

    #[test]
    fn strings_comments_and_dollar_bodies_hide_their_contents() {
        assert_eq!(
            words(
                "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN NEW.x = now(); RETURN NEW; END; $$ LANGUAGE plpgsql;\
                 DO $body$ BEGIN DELETE FROM cache; END $body$;\
                 UPDATE t SET a = E'it\\'s; x' /* don't; WHERE */ WHERE id = $1"
            ),
            vec![
                vec![
                    "CREATE", "FUNCTION", "F", "RETURNS", "TRIGGER", "AS", "LANGUAGE", "PLPGSQL"
                ],
                vec!["DO"],
                vec!["UPDATE", "T", "SET", "A", "=", "WHERE", "ID", "=", "$", "1"],
            ]
        );
        assert_eq!(
            words("/* a /* nested */ b */ DROP TABLE x"),
            vec![vec!["DROP", "TABLE", "X"]]
        );
        assert_eq!(
            words("SELECT 'a;b', \"Semi;colon\""),
            vec![vec!["SELECT", ",", "Semi;colon"]]
        );
    }
}
