//! Mistakes in `#[limit]` / `#[exempt]` are compile errors with a useful message.

#[test]
fn macro_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
