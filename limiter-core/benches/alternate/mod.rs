//! Timing in alternating rounds, for hosts whose speed swings over seconds (virtual machines
//! sharing a core): criterion measures one function for seconds before the next, so two of
//! its means can come from different speeds, where rounds that take turns see the swings
//! alike.

use std::time::Instant;

/// The median time per call (ns) of each of `fs`, over `rounds` rounds in which each runs
/// `calls` times, every round starting one further along than the last. A round of each
/// before the first warms caches and tables.
pub fn medians<const N: usize>(
    mut fs: [&mut dyn FnMut(); N],
    rounds: usize,
    calls: u32,
) -> [f64; N] {
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..calls {
            f();
        }
        start.elapsed().as_nanos() as f64 / f64::from(calls)
    };
    for f in fs.iter_mut() {
        time(&mut **f);
    }
    let mut times: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(rounds));
    for round in 0..rounds {
        for k in 0..N {
            let i = (round + k) % N;
            times[i].push(time(&mut *fs[i]));
        }
    }
    times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    })
}
