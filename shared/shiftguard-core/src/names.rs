//! What shiftguard accepts as a name in its configuration: a backfill's or a check's name, and
//! the SQL identifiers and table names it splices into statements (only plain ones, so no
//! quoting is ever needed and nothing can be injected).

/// A backfill's or a check's name: 1-100 letters, digits, `_` or `-`.
pub fn is_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A plain SQL identifier: letters, digits and underscores, not starting with a digit.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// `table` or `schema.table`, both plain identifiers.
pub fn is_table_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|part| is_identifier(part))
}
