//! The rate grammar: every form Python `limits` accepts, and the exact errors for the rest.

use limiter_core::{Rate, Unit, parse_rates};
use proptest::prelude::*;

fn rate(amount: u64, multiples: u64, unit: Unit) -> Rate {
    Rate::new(amount, multiples, unit).unwrap()
}

#[test]
fn accepts_every_form_limits_accepts() {
    use Unit::*;
    let table: &[(&str, &[Rate])] = &[
        ("10/minute", &[rate(10, 1, Minute)]),
        ("10 per minute", &[rate(10, 1, Minute)]),
        ("10 per 2 minutes", &[rate(10, 2, Minute)]),
        ("10perminute", &[rate(10, 1, Minute)]),
        (" 10 / SECOND ", &[rate(10, 1, Second)]),
        ("1/SECOND", &[rate(1, 1, Second)]),
        ("1 / Second", &[rate(1, 1, Second)]),
        ("1 PER Hour", &[rate(1, 1, Hour)]),
        ("5 per 10 hours", &[rate(5, 10, Hour)]),
        ("100/7days", &[rate(100, 7, Day)]),
        ("1/month", &[rate(1, 1, Month)]),
        ("2 per years", &[rate(2, 1, Year)]),
        ("10 per2minutes", &[rate(10, 2, Minute)]),
        ("3\t/\n4 seconds", &[rate(3, 4, Second)]),
        ("0 per day", &[rate(0, 1, Day)]),
        (
            "1/second;2/minute|3/hour",
            &[rate(1, 1, Second), rate(2, 1, Minute), rate(3, 1, Hour)],
        ),
        (
            "100 per hour, 5000 per day",
            &[rate(100, 1, Hour), rate(5000, 1, Day)],
        ),
        (
            "10/hour;100/day;2000 per year",
            &[rate(10, 1, Hour), rate(100, 1, Day), rate(2000, 1, Year)],
        ),
        // `limits` lets a colon stand right before a separator.
        (
            "1/second:;2/minute",
            &[rate(1, 1, Second), rate(2, 1, Minute)],
        ),
    ];
    for (text, expected) in table {
        let parsed = parse_rates(text).unwrap_or_else(|e| panic!("{text:?} rejected: {e}"));
        assert_eq!(&parsed, expected, "{text:?}");
    }
}

#[test]
fn month_and_year_are_limits_lengths() {
    assert_eq!(
        Rate::parse("1/month").unwrap().period().as_secs(),
        30 * 86_400
    );
    assert_eq!(
        Rate::parse("1/year").unwrap().period().as_secs(),
        360 * 86_400
    );
}

#[test]
fn display_is_flask_limiters_spelling() {
    assert_eq!(
        Rate::parse("1/minute").unwrap().to_string(),
        "1 per 1 minute"
    );
    assert_eq!(
        Rate::parse("10 per 2 hours").unwrap().to_string(),
        "10 per 2 hour"
    );
}

#[test]
fn rejects_with_exact_message_and_span() {
    const UNITS: &str = "(units: second, minute, hour, day, month, year)";
    let table: &[(&str, std::ops::Range<usize>, String)] = &[
        (
            "1 per millenium",
            6..15,
            format!("unknown unit \"millenium\" {UNITS}"),
        ),
        (
            "1 per minit",
            6..11,
            format!("unknown unit \"minit\"; did you mean \"minute\"? {UNITS}"),
        ),
        (
            "1 per 5 sec",
            8..11,
            format!("unknown unit \"sec\"; did you mean \"second\"? {UNITS}"),
        ),
        (
            "10 per 5 secs",
            9..13,
            format!("unknown unit \"secs\"; did you mean \"second\"? {UNITS}"),
        ),
        (
            "10 per hrs",
            7..10,
            format!("unknown unit \"hrs\"; did you mean \"hour\"? {UNITS}"),
        ),
        (
            "meow",
            0..4,
            "expected a number at \"meow\"; write a rate like \"10 per minute\"".into(),
        ),
        (
            "",
            0..0,
            "empty rate string; write a rate like \"10 per minute\"".into(),
        ),
        (
            "1 per",
            5..5,
            format!("missing unit after \"1 per\"; write e.g. \"1 per minute\" {UNITS}"),
        ),
        (
            "-1/second",
            0..2,
            "negative count \"-1\": a rate allows 0 or more hits".into(),
        ),
        (
            "1.5/second",
            0..3,
            "fractional count \"1.5\": counts are whole numbers; write \"3 per 2 seconds\" instead"
                .into(),
        ),
        (
            "0.25 per minute",
            0..4,
            "fractional count \"0.25\": counts are whole numbers; write \"1 per 4 minutes\" instead"
                .into(),
        ),
        (
            "1.5 per 2 minutes",
            0..3,
            "fractional count \"1.5\": counts are whole numbers; write \"3 per 4 minutes\" instead"
                .into(),
        ),
        (
            // Trailing zeros say nothing.
            "1.50 per minute",
            0..4,
            "fractional count \"1.50\": counts are whole numbers; write \"3 per 2 minutes\" instead"
                .into(),
        ),
        (
            // Seven digits of fraction: cut to six, it would have suggested "1 per 1 second".
            "1.0000001 per second",
            0..9,
            "fractional count \"1.0000001\": counts are whole numbers".into(),
        ),
        (
            // As with a shorter fraction: no whole rate of this pace is within the cap.
            "4294967296.1234567 per second",
            0..18,
            "count \"4294967296.1234567\" is too large: a rate allows at most 4294967295 hits \
             per period"
                .into(),
        ),
        (
            // The period does not parse: no whole rate to suggest (not one per second).
            "1.5 per minit",
            0..3,
            "fractional count \"1.5\": counts are whole numbers".into(),
        ),
        (
            // Its whole rate, 3 per 2000 years, has a period over the cap: none to suggest.
            "1.5 per 1000 years",
            0..3,
            "fractional count \"1.5\": counts are whole numbers".into(),
        ),
        (
            // The whole part alone fills a u64: the count is too large, with no suggestion.
            "18446744073709551615.9/second",
            0..22,
            "count \"18446744073709551615.9\" is too large: a rate allows at most 4294967295 hits per period".into(),
        ),
        (
            "99999999999999999999.5/second",
            0..22,
            "count \"99999999999999999999.5\" is too large: a rate allows at most 4294967295 hits per period".into(),
        ),
        (
            // Its whole rate, 8589934591 per 2 seconds, would be over the cap too.
            "4294967295.5/second",
            0..12,
            "count \"4294967295.5\" is too large: a rate allows at most 4294967295 hits per period".into(),
        ),
        (
            "1/second,",
            8..9,
            "trailing separator \",\"; remove it or add a rate after it".into(),
        ),
        (
            "1/second,,2/minute",
            9..10,
            "empty rate between separators; remove the extra \",\"".into(),
        ),
        (
            "10 minutes",
            3..10,
            "expected \"per\" or \"/\" after the count, found \"minutes\"".into(),
        ),
        (
            "10 per minute extra",
            14..19,
            "unexpected \"extra\" after a rate; separate rates with \",\", \";\" or \"|\"".into(),
        ),
        (
            "1 per 0 minutes",
            6..7,
            "period \"0\" must be at least 1".into(),
        ),
        (
            "99999999999999999999/second",
            0..20,
            "count \"99999999999999999999\" is too large: a rate allows at most 4294967295 hits per period".into(),
        ),
        (
            "4294967296 per day",
            0..10,
            "count \"4294967296\" is too large: a rate allows at most 4294967295 hits per period".into(),
        ),
        (
            "1/second:",
            8..9,
            "unexpected \":\" after a rate; separate rates with \",\", \";\" or \"|\"".into(),
        ),
    ];
    for (text, span, message) in table {
        let err = parse_rates(text).expect_err(text);
        assert_eq!(err.to_string(), *message, "{text:?}");
        assert_eq!(err.span(), *span, "{text:?}");
    }
}

#[test]
fn rate_parse_takes_exactly_one() {
    let err = Rate::parse("1/second, 2/minute").unwrap_err();
    assert_eq!(err.to_string(), "expected exactly one rate, found 2");
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse_rates(&text) {
            let span = e.span();
            prop_assert!(span.start <= span.end && span.end <= text.len());
            prop_assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
        }
    }

    #[test]
    fn never_panics_on_rate_like_text(text in "[ 0-9./,;|:a-zA-Z\t-]{0,40}") {
        if let Err(e) = parse_rates(&text) {
            prop_assert!(e.span().end <= text.len());
        }
    }

    #[test]
    fn generated_rates_round_trip(amount in 0u64..1_000_000, multiples in 1u64..100, unit in 0usize..6,
                                  sep in prop::sample::select(vec!["/", " per ", "per", " / "]),
                                  plural in any::<bool>()) {
        let units = [Unit::Second, Unit::Minute, Unit::Hour, Unit::Day, Unit::Month, Unit::Year];
        let unit = units[unit];
        let text = format!("{amount}{sep}{multiples} {}{}", unit.name(), if plural { "s" } else { "" });
        prop_assert_eq!(parse_rates(&text).unwrap(), vec![rate(amount, multiples, unit)]);
    }
}

/// A count with many fractions (a dynamic limit's string can come from a request) is one
/// error, found in linear time: the suggestion's second look at the period used to parse the
/// rest as another fractional count, one call deeper per dot, and overflowed the stack at
/// about a thousand.
#[test]
fn a_count_with_thousands_of_fractions_is_an_error_not_a_stack_overflow() {
    let text = format!("{}1 per second", "1.".repeat(50_000));
    let err = parse_rates(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "fractional count \"1.1\": counts are whole numbers"
    );
    assert_eq!(err.span(), 0..3);
    // One more fraction, as before: no whole rate to suggest.
    assert_eq!(
        parse_rates("1.5.5 per second").unwrap_err().to_string(),
        "fractional count \"1.5\": counts are whole numbers"
    );
}

/// A hundred rates in one string parse; the 101st is refused, named by its span.
#[test]
fn a_string_of_more_than_a_hundred_rates_is_refused_at_the_first_one_over() {
    let hundred: Vec<String> = (1..=100).map(|n| format!("{n} per second")).collect();
    let hundred = hundred.join(", ");
    assert_eq!(parse_rates(&hundred).unwrap().len(), 100);
    let text = format!("{hundred}, 7 per day ");
    let err = parse_rates(&text).unwrap_err();
    assert_eq!(err.to_string(), "too many rates in one string: at most 100");
    assert_eq!(&text[err.span()], "7 per day");
}

/// One rate written twice, in any spelling, would charge one counter twice per request (with
/// "1 per minute" twice, every request refused): refused, naming the repeat.
#[test]
fn a_rate_repeated_in_one_string_is_refused_naming_the_repeat() {
    let text = "1/minute, 10 per hour; 1 per 1 minute";
    let err = parse_rates(text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rate \"1 per 1 minute\" repeats an earlier one in this string: both would charge one \
         counter; remove one"
    );
    assert_eq!(&text[err.span()], "1 per 1 minute");
    // The span and the message name the rate alone: not the whitespace after it, nor the
    // colon `limits` takes before a separator.
    for text in [
        "1/minute, 1 per minute  ",
        "1/minute, 1 per minute :; 2/hour",
    ] {
        let err = parse_rates(text).unwrap_err();
        assert_eq!(&text[err.span()], "1 per minute", "{text:?}");
        assert!(
            err.to_string().starts_with("rate \"1 per minute\" repeats"),
            "{text:?}: {err}"
        );
    }
    // The same pace in other units is another rate, with its own counter.
    assert_eq!(parse_rates("1 per minute, 60 per hour").unwrap().len(), 2);
}
