//! What shiftguard accepts as a number in its configuration: every numeric setting has a range
//! (README lists them), checked before anything uses it, so no later arithmetic can overflow
//! and no setting can turn a bounded step into an unbounded one (a batch the size of the table, a
//! lease that is already expired).

use std::ops::RangeInclusive;

/// `value` of the setting `key` if it lies in `range`; otherwise the problem, naming both.
pub fn within(key: &str, value: u64, range: RangeInclusive<u64>) -> Result<(), String> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(format!(
        "{key} = {value} is out of range: it must be between {} and {}",
        range.start(),
        range.end()
    ))
}

/// Checks each `(key, value, range)` in order; the first problem.
pub fn all_within(settings: &[(&str, Option<u64>, RangeInclusive<u64>)]) -> Result<(), String> {
    settings
        .iter()
        .filter_map(|(key, value, range)| value.map(|v| (key, v, range)))
        .try_for_each(|(key, value, range)| within(key, value, range.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edges_are_in_and_one_past_is_out() {
        assert_eq!(within("batch_size", 1, 1..=10), Ok(()));
        assert_eq!(within("batch_size", 10, 1..=10), Ok(()));
        assert_eq!(
            within("batch_size", 11, 1..=10),
            Err("batch_size = 11 is out of range: it must be between 1 and 10".to_owned())
        );
        assert!(within("pause_ms", 0, 1..=10).is_err());
        assert_eq!(
            all_within(&[
                ("a", Some(5), 1..=9),
                ("b", None, 1..=2),
                ("c", Some(3), 4..=5)
            ]),
            Err("c = 3 is out of range: it must be between 4 and 5".to_owned())
        );
    }
}
