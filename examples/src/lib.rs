//! Shared bits of the runnable examples (see the `*.rs` files beside `src/`).

/// Where an example listens: `BIND` (host:port) when set, else 127.0.0.1:8080, so tests and
/// scripts can run several at once.
pub fn bind_address() -> String {
    std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_string())
}

/// The limiter, or a one-line configuration error on stderr and exit status 2.
pub fn or_exit<T>(built: Result<T, limiter_actix::ConfigError>) -> T {
    built.unwrap_or_else(|error| {
        eprintln!("bad limiter configuration: {error}");
        std::process::exit(2)
    })
}
