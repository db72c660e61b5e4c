//! Rate strings: the grammar of Python `limits` (what Flask-Limiter parses).
//!
//! `N per M unit`, `N per unit`, `N/unit`, `N/M unit`; units `second`, `minute`, `hour`, `day`,
//! `month` (30 days) and `year` (360 days), each with an optional plural `s`; case-insensitive;
//! any whitespace between tokens (none is needed: `10perminute`); several rates separated by one
//! of `,` `;` `|`.
//!
//! ```
//! use limiter_core::{parse_rates, Rate};
//! use std::time::Duration;
//!
//! let rates = parse_rates("100 per hour, 5000/day").unwrap();
//! assert_eq!(rates[0].amount(), 100);
//! assert_eq!(rates[1].period(), Duration::from_secs(86_400));
//! assert_eq!(rates[0].to_string(), "100 per 1 hour");
//!
//! let err = parse_rates("1 per minit").unwrap_err();
//! assert_eq!(err.span(), 6..11);
//! assert!(err.to_string().contains("did you mean \"minute\"?"));
//! ```

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use crate::suggest::Suggestion;

/// A time unit of a rate string.
///
/// ```
/// use limiter_core::{Rate, Unit};
/// let rate = Rate::parse("3 per 2 hours").unwrap();
/// assert_eq!(rate.unit(), Unit::Hour);
/// assert_eq!(rate.unit().seconds() * rate.multiples(), 7_200);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// One second.
    Second,
    /// 60 seconds.
    Minute,
    /// 3 600 seconds.
    Hour,
    /// 86 400 seconds.
    Day,
    /// 30 days, as in Python `limits`.
    Month,
    /// 360 days (12 months of 30 days), as in Python `limits`.
    Year,
}

impl Unit {
    const ALL: [Unit; 6] = [
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Month,
        Unit::Year,
    ];

    /// The unit's singular name, as written in rate strings and in Flask-Limiter's messages.
    ///
    /// ```
    /// use limiter_core::Unit;
    /// assert_eq!(Unit::Month.name(), "month");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    /// The unit's length in seconds.
    ///
    /// ```
    /// use limiter_core::Unit;
    /// assert_eq!(Unit::Day.seconds(), 86_400);
    /// assert_eq!(Unit::Year.seconds(), 360 * Unit::Day.seconds()); // not 365
    /// ```
    pub const fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Month => 30 * 86_400,
            Unit::Year => 12 * 30 * 86_400,
        }
    }

    fn from_word(word: &str) -> Option<Unit> {
        let lower = word.to_ascii_lowercase();
        let singular = lower.strip_suffix('s').unwrap_or(&lower);
        Unit::ALL.into_iter().find(|u| u.name() == singular)
    }
}

/// One rate: at most `amount` hits per `multiples` × `unit`.
///
/// ```
/// use limiter_core::{Rate, Unit};
/// let rate: Rate = "10/minute".parse().unwrap();
/// assert_eq!(rate, Rate::new(10, 1, Unit::Minute).unwrap());
/// assert_eq!(rate.to_string(), "10 per 1 minute");
/// // Rates compare as written: the same pace in other units is another rate (and counter).
/// assert_ne!(rate, "600 per hour".parse().unwrap());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    amount: u64,
    multiples: u64,
    unit: Unit,
}

/// Longest period a rate may have, so that timestamps in microseconds never overflow.
pub(crate) const MAX_PERIOD_SECS: u64 = 1_000 * 360 * 86_400;

/// Most hits a rate may allow per period. A moving window keeps one entry per hit (16 GiB at
/// this many), the sliding window counts in 32 bits: past this, no strategy could keep its word.
///
/// ```
/// use limiter_core::{Rate, Unit, MAX_AMOUNT};
/// assert!(Rate::new(MAX_AMOUNT, 1, Unit::Second).is_ok());
/// let err = Rate::parse("4294967296 per second").unwrap_err();
/// assert!(err.to_string().starts_with("count \"4294967296\" is too large"));
/// ```
pub const MAX_AMOUNT: u64 = u32::MAX as u64;

impl Rate {
    /// A rate of `amount` hits per `multiples` × `unit`.
    ///
    /// ```
    /// use limiter_core::{Rate, Unit};
    /// let rate = Rate::new(10, 2, Unit::Minute).unwrap();
    /// assert_eq!(rate.to_string(), "10 per 2 minute");
    /// ```
    ///
    /// # Errors
    /// A zero or over-long period (more than 1000 years of 360 days), or an amount over
    /// [`MAX_AMOUNT`].
    pub fn new(amount: u64, multiples: u64, unit: Unit) -> Result<Rate, RateParseError> {
        let whole = 0..0;
        if amount > MAX_AMOUNT {
            return Err(RateParseError::new(
                ErrorKind::CountTooLarge(amount.to_string()),
                whole,
            ));
        }
        if multiples == 0 {
            return Err(RateParseError::new(
                ErrorKind::ZeroPeriod("0".into()),
                whole,
            ));
        }
        match multiples.checked_mul(unit.seconds()) {
            Some(secs) if secs <= MAX_PERIOD_SECS => Ok(Rate {
                amount,
                multiples,
                unit,
            }),
            _ => Err(RateParseError::new(
                ErrorKind::PeriodTooLong(multiples.to_string()),
                whole,
            )),
        }
    }

    /// Parses exactly one rate (`"10 per minute"`); use [`parse_rates`] for lists.
    ///
    /// ```
    /// use limiter_core::Rate;
    /// assert_eq!(Rate::parse(" 5 per 30 seconds ").unwrap().period().as_secs(), 30);
    /// let err = Rate::parse("1/second; 10/minute").unwrap_err();
    /// assert_eq!(err.to_string(), "expected exactly one rate, found 2");
    /// let err = Rate::parse("1/second, 1 per second").unwrap_err();
    /// assert_eq!(err.to_string(), "expected exactly one rate, found 2");
    /// ```
    ///
    /// # Errors
    /// As [`parse_rates`], and a list of more than one rate.
    pub fn parse(text: &str) -> Result<Rate, RateParseError> {
        let mut rates = parse_list(text, false)?;
        if rates.len() != 1 {
            return Err(RateParseError::new(
                ErrorKind::NotOne(rates.len()),
                0..text.len(),
            ));
        }
        Ok(rates.remove(0))
    }

    /// Hits allowed per period.
    ///
    /// ```
    /// use limiter_core::Rate;
    /// assert_eq!(Rate::parse("10 per 2 minutes").unwrap().amount(), 10);
    /// ```
    pub const fn amount(&self) -> u64 {
        self.amount
    }

    /// How many units make the period (the `2` of `10 per 2 minutes`).
    ///
    /// ```
    /// use limiter_core::Rate;
    /// assert_eq!(Rate::parse("10 per 2 minutes").unwrap().multiples(), 2);
    /// assert_eq!(Rate::parse("10 per minute").unwrap().multiples(), 1);
    /// ```
    pub const fn multiples(&self) -> u64 {
        self.multiples
    }

    /// The period's unit.
    ///
    /// ```
    /// use limiter_core::{Rate, Unit};
    /// assert_eq!(Rate::parse("10 per 2 MINUTES").unwrap().unit(), Unit::Minute);
    /// ```
    pub const fn unit(&self) -> Unit {
        self.unit
    }

    /// The period's length.
    ///
    /// ```
    /// use limiter_core::Rate;
    /// use std::time::Duration;
    /// assert_eq!(Rate::parse("10 per 2 minutes").unwrap().period(), Duration::from_secs(120));
    /// ```
    pub const fn period(&self) -> Duration {
        Duration::from_secs(self.multiples * self.unit.seconds())
    }

    /// The period's length in microseconds, the unit of every timestamp in this crate.
    ///
    /// ```
    /// use limiter_core::Rate;
    /// assert_eq!(Rate::parse("1/second").unwrap().period_micros(), 1_000_000);
    /// ```
    pub const fn period_micros(&self) -> u64 {
        self.multiples * self.unit.seconds() * 1_000_000
    }
}

impl fmt::Display for Rate {
    /// Flask-Limiter's spelling, used in the default 429 message: `1 per 1 minute`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per {} {}",
            self.amount,
            self.multiples,
            self.unit.name()
        )
    }
}

impl FromStr for Rate {
    type Err = RateParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rate::parse(s)
    }
}

/// Why a rate string was rejected, with the byte range of the offending token.
///
/// ```
/// use limiter_core::Rate;
/// let text = "5 per fortnight";
/// let err = Rate::parse(text).unwrap_err();
/// assert_eq!(&text[err.span()], "fortnight");
/// assert!(err.to_string().starts_with("unknown unit \"fortnight\" (units: second, minute"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct RateParseError {
    kind: ErrorKind,
    span: Range<usize>,
}

impl RateParseError {
    fn new(kind: ErrorKind, span: Range<usize>) -> Self {
        RateParseError { kind, span }
    }

    /// Byte range of the offending token in the parsed string (empty at the point where
    /// something is missing).
    ///
    /// ```
    /// use limiter_core::Rate;
    /// let err = Rate::parse("5 per").unwrap_err();
    /// // Nothing to point at: an empty range where the unit should be.
    /// assert_eq!(err.span(), 5..5);
    /// assert!(err.to_string().starts_with("missing unit after \"5 per\"; write e.g. \"5 per minute\""));
    /// ```
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// Moves the span by `offset` bytes, for a rate string embedded in a larger text.
    ///
    /// ```
    /// use limiter_core::Rate;
    /// let line = "limit = 10 per minit";
    /// let at = line.find('=').unwrap() + 2;
    /// let err = Rate::parse(&line[at..]).unwrap_err().offset_by(at);
    /// assert_eq!(&line[err.span()], "minit");
    /// ```
    pub fn offset_by(mut self, offset: usize) -> Self {
        self.span = self.span.start + offset..self.span.end + offset;
        self
    }
}

const UNITS_HINT: &str = "units: second, minute, hour, day, month, year";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum ErrorKind {
    #[error("empty rate string; write a rate like \"10 per minute\"")]
    Empty,
    #[error("expected a number at \"{0}\"; write a rate like \"10 per minute\"")]
    ExpectedCount(String),
    #[error("negative count \"{0}\": a rate allows 0 or more hits")]
    NegativeCount(String),
    #[error("fractional count \"{0}\": counts are whole numbers{1}")]
    FractionalCount(String, WholeRate),
    #[error("count \"{0}\" is too large: a rate allows at most {MAX_AMOUNT} hits per period")]
    CountTooLarge(String),
    #[error("expected \"per\" or \"/\" after the count, found \"{0}\"")]
    ExpectedPer(String),
    #[error("missing unit after \"{0}\"; write e.g. \"{0} minute\" ({UNITS_HINT})")]
    MissingUnit(String),
    #[error("unknown unit \"{0}\"{1} ({UNITS_HINT})")]
    UnknownUnit(String, Suggestion),
    #[error("period \"{0}\" must be at least 1")]
    ZeroPeriod(String),
    #[error("period \"{0}\" is too long (at most 1000 years)")]
    PeriodTooLong(String),
    #[error("unexpected \"{0}\" after a rate; separate rates with \",\", \";\" or \"|\"")]
    Trailing(String),
    #[error("trailing separator \"{0}\"; remove it or add a rate after it")]
    TrailingSeparator(char),
    #[error("too many rates in one string: at most {MAX_RATES}")]
    TooManyRates,
    #[error(
        "rate \"{0}\" repeats an earlier one in this string: both would charge one counter; remove one"
    )]
    RepeatedRate(String),
    #[error("empty rate between separators; remove the extra \"{0}\"")]
    EmptyBetweenSeparators(char),
    #[error("expected exactly one rate, found {0}")]
    NotOne(usize),
}

/// `; write "3 per 2 seconds" instead`, or nothing when the period after a fractional count
/// does not parse, or its whole rate's period would be over the cap.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WholeRate(Option<String>);

impl fmt::Display for WholeRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(rate) => write!(f, "; write \"{rate}\" instead"),
            None => Ok(()),
        }
    }
}

/// Most rates one string may hold. Each is decided on every request it applies to, and the
/// headers number the limits of a kind in 16 bits: thousands of them are a mistake (or a
/// runaway dynamic limit), refused here.
const MAX_RATES: usize = 100;

/// Parses one rate or a list of rates separated by `,`, `;` or `|`.
///
/// Accepts every string Python `limits` accepts, with the same meaning, but for a rate written
/// twice.
///
/// ```
/// let rates = limiter_core::parse_rates("1/second;2 per 3 minutes|0 per day").unwrap();
/// assert_eq!(rates.len(), 3);
/// assert_eq!(rates[1].period().as_secs(), 180);
/// assert_eq!(rates[2].amount(), 0);
/// ```
///
/// # Errors
/// A [`RateParseError`] naming the first bad token, its byte range and, where one is close,
/// a suggestion; also for more than 100 rates in one string, or one rate twice (`"1/minute,
/// 1 per minute"`: one counter charged twice per request).
pub fn parse_rates(text: &str) -> Result<Vec<Rate>, RateParseError> {
    parse_list(text, true)
}

/// The rates of `text`; `as_limits` holds them to what a list of limits may be (how many, no
/// rate twice), which [`Rate::parse`] leaves to its own "exactly one".
fn parse_list(text: &str, as_limits: bool) -> Result<Vec<Rate>, RateParseError> {
    let mut parser = Parser { text, pos: 0 };
    if text.trim().is_empty() {
        return Err(RateParseError::new(ErrorKind::Empty, 0..text.len()));
    }
    let mut rates = Vec::new();
    loop {
        let start = parser.pos;
        let rate = parser.single()?;
        if as_limits && (rates.len() == MAX_RATES || rates.contains(&rate)) {
            // The rate as written: `single` also takes the whitespace around it and the colon
            // `limits` allows before a separator.
            let taken = &text[start..parser.pos];
            let written = taken
                .trim_start()
                .trim_end_matches(|c: char| c == ':' || c.is_whitespace());
            let at = start + (taken.len() - taken.trim_start().len());
            let kind = if rates.len() == MAX_RATES {
                ErrorKind::TooManyRates
            } else {
                ErrorKind::RepeatedRate(written.to_owned())
            };
            return Err(RateParseError::new(kind, at..at + written.len()));
        }
        rates.push(rate);
        let Some(sep) = parser.peek() else {
            return Ok(rates);
        };
        let sep_pos = parser.pos;
        parser.pos += 1;
        parser.skip_ws();
        match parser.peek() {
            None => {
                return Err(RateParseError::new(
                    ErrorKind::TrailingSeparator(sep),
                    sep_pos..sep_pos + 1,
                ));
            }
            Some(c) if is_separator(c) => {
                return Err(RateParseError::new(
                    ErrorKind::EmptyBetweenSeparators(c),
                    parser.pos..parser.pos + 1,
                ));
            }
            Some(_) => {}
        }
    }
}

fn is_separator(c: char) -> bool {
    matches!(c, ',' | ';' | '|')
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Takes the longest prefix whose chars satisfy `keep`.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> (&'a str, Range<usize>) {
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        let start = self.pos;
        self.pos += len;
        (&rest[..len], start..self.pos)
    }

    /// The token at the cursor for an error message: up to whitespace or a separator.
    fn token(&self) -> (&'a str, Range<usize>) {
        let rest = self.rest();
        let len = rest
            .find(|c: char| c.is_whitespace() || is_separator(c))
            .unwrap_or(rest.len());
        (&rest[..len], self.pos..self.pos + len)
    }

    /// One rate, with the whitespace around it.
    fn single(&mut self) -> Result<Rate, RateParseError> {
        self.skip_ws();
        let rate_start = self.pos;
        let amount = self.count()?;
        self.skip_ws();
        if self.rest().starts_with('/') {
            self.pos += 1;
        } else if self
            .rest()
            .get(..3)
            .is_some_and(|w| w.eq_ignore_ascii_case("per"))
        {
            self.pos += 3;
        } else {
            let (found, span) = self.token();
            let found = if found.is_empty() {
                "end of text"
            } else {
                found
            };
            return Err(RateParseError::new(
                ErrorKind::ExpectedPer(found.into()),
                span,
            ));
        }
        self.skip_ws();
        let (digits, digits_span) = self.take_while(|c| c.is_ascii_digit());
        let multiples = if digits.is_empty() {
            1
        } else {
            digits.parse::<u64>().map_err(|_| {
                RateParseError::new(ErrorKind::PeriodTooLong(digits.into()), digits_span.clone())
            })?
        };
        self.skip_ws();
        let (word, word_span) = self.take_while(|c| c.is_alphabetic());
        if word.is_empty() {
            let (found, span) = self.token();
            if found.is_empty() {
                let whole = self.text[rate_start..self.pos].trim_end().to_string();
                let at = self.pos;
                return Err(RateParseError::new(ErrorKind::MissingUnit(whole), at..at));
            }
            return Err(RateParseError::new(
                ErrorKind::UnknownUnit(found.into(), Suggestion(suggest_unit(found))),
                span,
            ));
        }
        let Some(unit) = Unit::from_word(word) else {
            return Err(RateParseError::new(
                ErrorKind::UnknownUnit(word.into(), Suggestion(suggest_unit(word))),
                word_span,
            ));
        };
        let rate = Rate::new(amount, multiples, unit).map_err(|e| RateParseError {
            span: digits_span,
            ..e
        })?;
        self.skip_ws();
        // `limits` also takes a colon right before a separator ("1/second:;2/minute").
        if self.rest().starts_with(':') && self.rest()[1..].starts_with(is_separator) {
            self.pos += 1;
        }
        match self.peek() {
            None => Ok(rate),
            Some(c) if is_separator(c) => Ok(rate),
            Some(_) => {
                let (found, span) = self.token();
                Err(RateParseError::new(ErrorKind::Trailing(found.into()), span))
            }
        }
    }

    fn count(&mut self) -> Result<u64, RateParseError> {
        let start = self.pos;
        let negative = self.rest().starts_with('-');
        if negative {
            self.pos += 1;
        }
        let (digits, _) = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            self.pos = start;
            let (found, span) = self.token();
            let found = if found.is_empty() {
                "end of text"
            } else {
                found
            };
            return Err(RateParseError::new(
                ErrorKind::ExpectedCount(found.into()),
                span,
            ));
        }
        if negative {
            let span = start..self.pos;
            return Err(RateParseError::new(
                ErrorKind::NegativeCount(self.text[span.clone()].into()),
                span,
            ));
        }
        if self.rest().starts_with('.') {
            self.pos += 1;
            let (fraction, _) = self.take_while(|c| c.is_ascii_digit());
            let span = start..self.pos;
            let literal = self.text[span.clone()].to_string();
            // A count too large for any whole rate gets that error instead of a suggestion.
            let kind = match whole_rate_for(digits, fraction, self.rest()) {
                Some(suggestion) => ErrorKind::FractionalCount(literal, WholeRate(suggestion)),
                None => ErrorKind::CountTooLarge(literal),
            };
            return Err(RateParseError::new(kind, span));
        }
        match digits.parse::<u64>() {
            Ok(amount) if amount <= MAX_AMOUNT => Ok(amount),
            _ => Err(RateParseError::new(
                ErrorKind::CountTooLarge(digits.into()),
                start..self.pos,
            )),
        }
    }
}

/// `1.5` per second → `3 per 2 seconds`: the same rate with whole numbers; `None` when that
/// rate's count would be over [`MAX_AMOUNT`], `Some(None)` when there is no such rate to
/// suggest (the period does not parse, or would be over the cap once scaled).
fn whole_rate_for(whole: &str, fraction: &str, rest: &str) -> Option<Option<String>> {
    // Exact or nothing: a fraction of more than six digits ("1.0000001") has no whole rate
    // within the caps worth suggesting, and cut short it would name another rate.
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 6 {
        // Still too large when the whole part is at the cap: every whole rate of this pace
        // counts more than it per period.
        return (whole.parse::<u64>().ok()? < MAX_AMOUNT).then_some(None);
    }
    let scale = 10u64.pow(fraction.len() as u32);
    let numerator = whole
        .parse::<u64>()
        .ok()?
        .checked_mul(scale)?
        .checked_add(fraction.parse::<u64>().unwrap_or(0))?;
    // The period as written after the count ("per 2 minutes"), read by the parser itself;
    // none after a second fraction ("1.5.5 per second"), which the parser would read as one
    // more fractional count, one call deeper per dot: a long run of them overflowed the stack.
    let written = format!("1{rest}");
    let parsed = (!rest.starts_with('.'))
        .then(|| {
            Parser {
                text: &written,
                pos: 0,
            }
            .single()
            .ok()
        })
        .flatten();
    let (period_multiples, unit) =
        parsed.map_or((1, Unit::Second), |rate| (rate.multiples, rate.unit));
    // numerator / scale per M units = numerator per (M × scale) units, reduced.
    let period = period_multiples.saturating_mul(scale);
    let divisor = gcd(numerator.max(1), period);
    let (amount, multiples) = (numerator / divisor, period / divisor);
    if amount > MAX_AMOUNT {
        return None;
    }
    // Only a rate the parser takes is suggested.
    if parsed.is_none() || Rate::new(amount, multiples, unit).is_err() {
        return Some(None);
    }
    let plural = if multiples == 1 { "" } else { "s" };
    Some(Some(format!(
        "{amount} per {multiples} {}{plural}",
        unit.name()
    )))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The closest unit name within two edits, or one the word starts with.
fn suggest_unit(word: &str) -> Option<&'static str> {
    let names = Unit::ALL.map(Unit::name);
    crate::suggest::closest(word, &names)
}
