//! "Did you mean ...?": the closest of a few accepted words, for error messages.

use std::fmt;

/// `; did you mean "minute"?` in an error message, or nothing when no candidate is close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Suggestion(pub(crate) Option<&'static str>);

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(word) => write!(f, "; did you mean \"{word}\"?"),
            None => Ok(()),
        }
    }
}

/// The candidate closest to `word` (case-insensitive) within two edits, or one that starts
/// with it (three letters at least); `None` when nothing is close. A word ending in `s` is
/// also tried without it, so that plural abbreviations (`secs`, `mins`, `hrs`) find their
/// word as the singular ones do.
///
/// ```
/// use limiter_core::suggest::closest;
/// assert_eq!(closest("minit", &["second", "minute", "hour"]), Some("minute"));
/// assert_eq!(closest("sec", &["second", "minute"]), Some("second"));
/// assert_eq!(closest("mins", &["second", "minute", "hour"]), Some("minute"));
/// assert_eq!(closest("hrs", &["second", "minute", "hour"]), Some("hour"));
/// assert_eq!(closest("fortnight", &["second", "minute"]), None);
/// ```
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let singular = lower.strip_suffix('s').filter(|s| !s.is_empty());
    let forms = std::iter::once(lower.as_str()).chain(singular);
    let close = |form: &str, c_lower: &str| {
        let d = edit_distance(form, c_lower);
        (d <= 2 || (form.len() >= 3 && c_lower.starts_with(form))).then_some(d)
    };
    candidates
        .iter()
        .filter_map(|c| {
            let c_lower = c.to_ascii_lowercase();
            let d = forms
                .clone()
                .filter_map(|form| close(form, &c_lower))
                .min()?;
            Some((d, *c))
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
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
