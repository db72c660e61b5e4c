//! Mistakes in `#[limit]` / `#[exempt]` are compile errors with a useful message; handlers
//! written as actix allows compile.

#[test]
fn macro_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

#[test]
fn handlers_actix_accepts_compile() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
}
