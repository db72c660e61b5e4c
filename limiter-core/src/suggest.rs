//! "Did you mean ...?": the closest of a few accepted words, for error messages.

/// The candidate closest to `word` (case-insensitive) within two edits, or one that starts
/// with it (three letters at least); `None` when nothing is close.
///
/// ```
/// use limiter_core::suggest::closest;
/// assert_eq!(closest("minit", &["second", "minute", "hour"]), Some("minute"));
/// assert_eq!(closest("sec", &["second", "minute"]), Some("second"));
/// assert_eq!(closest("fortnight", &["second", "minute"]), None);
/// ```
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (c.to_ascii_lowercase(), *c))
        .map(|(c_lower, c)| (edit_distance(&lower, &c_lower), c_lower, c))
        .filter(|(d, c_lower, _)| *d <= 2 || (lower.len() >= 3 && c_lower.starts_with(&lower)))
        .min_by_key(|&(d, _, _)| d)
        .map(|(_, _, c)| c)
}

/// Levenshtein distance, by chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}
