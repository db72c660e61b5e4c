//! The engine of `limiter`: rate strings, strategies, clocks and counter storage, with no web
//! framework in it. `limiter-actix` builds the actix-web integration on top.
//!
//! ```
//! use limiter_core::{parse_rates, Hit, ManualClock, MemoryStore, Strategy, Timestamp, Clock};
//! use std::time::Duration;
//!
//! let manual = ManualClock::new(Timestamp::from_secs(1_000_020));
//! let clock = Clock::from(manual.clone());
//! let store = MemoryStore::default();
//! let [per_second, per_minute] = parse_rates("1/second, 2/minute").unwrap()[..] else { panic!() };
//! let hits = [
//!     Hit::new("ip:10.0.0.1/1s", per_second, Strategy::FixedWindow),
//!     Hit::new("ip:10.0.0.1/1m", per_minute, Strategy::FixedWindow),
//! ];
//! assert!(store.decide_now(&hits, clock.now()).admitted);
//! let second = store.decide_now(&hits, clock.now());
//! assert_eq!(second.breached, Some(0)); // the per-second limit, first in the batch
//! manual.advance(Duration::from_secs(1));
//! assert!(store.decide_now(&hits, clock.now()).admitted);
//! assert_eq!(store.decide_now(&hits, clock.now()).breached, Some(0));
//! manual.advance(Duration::from_secs(1));
//! assert_eq!(store.decide_now(&hits, clock.now()).breached, Some(1));
//! ```
#![deny(missing_docs)]

pub mod clock;
pub mod config;
pub mod error;
pub mod keys;
pub mod rate;
pub mod storage;
pub mod strategy;
pub mod suggest;

pub use clock::{Clock, ManualClock, Timestamp};
pub use config::StorageUri;
pub use error::{ConfigError, StorageError};
pub use rate::{MAX_AMOUNT, Rate, RateParseError, Unit, parse_rates};
pub use storage::memory::MemoryStore;
pub use storage::{Decision, Hit, StatsList, Storage, Store};
pub use strategy::{LimitStats, Strategy};
