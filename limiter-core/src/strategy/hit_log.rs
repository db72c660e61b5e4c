//! The moving window's log of hit times, laid out for the memory store's hot path.
//!
//! One allocation holds a 16-byte header (the timestamps' base and the period) and a ring of
//! entries right after it; the ring's position (head, length, capacity) lives in the handle,
//! inside the store's slot. So once the slot is loaded, the header, the oldest entry and the
//! slot of the next push are all at known addresses and load in parallel (a `Box<VecDeque>`
//! made that three dependent loads). Blocks are whole cache lines, aligned to them; in a ring
//! near its capacity (a client at its rate), the newest entry is right behind the oldest.
//!
//! Entries are `u32` microseconds after the base (71 minutes of range, half the memory of
//! absolute times). A push that does not fit moves the base to the earliest time held (or to
//! now, on an empty log); a log whose times span more than a `u32` (a period over 71
//! minutes, or a clock that stepped far back) turns wide: absolute `u64` times, base 0, until
//! it is empty again.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

/// Header bytes before the entries: base and period, each a `u64`.
const HEADER: usize = 16;
/// Blocks are whole cache lines.
const LINE: usize = 64;

/// A moving window log: hit times, oldest first (in arrival order: after the clock stepped
/// back, not necessarily sorted).
pub(crate) struct HitLog {
    /// Header and ring; `None` until the first push (a peek never allocates).
    block: Option<NonNull<u8>>,
    /// Ring index of the oldest entry.
    head: u32,
    /// Entries held.
    len: u32,
    /// Entries the ring has room for.
    cap: u32,
    /// Whether the entries are absolute `u64` times (else `u32` offsets from the base).
    wide: bool,
}

// SAFETY: a log owns its block exclusively and has no interior mutability.
unsafe impl Send for HitLog {}
// SAFETY: as above; `&HitLog` only reads.
unsafe impl Sync for HitLog {}

impl Default for HitLog {
    fn default() -> Self {
        HitLog::new()
    }
}

impl HitLog {
    /// An empty log; allocates nothing.
    pub(crate) const fn new() -> HitLog {
        HitLog {
            block: None,
            head: 0,
            len: 0,
            cap: 0,
            wide: false,
        }
    }

    /// Entries held.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        u64::from(self.len)
    }

    /// The `i`-th oldest time (`i < len`).
    #[inline]
    pub(crate) fn get(&self, i: u64) -> u64 {
        assert!(i < self.len(), "log index {i} out of {}", self.len);
        let block = self.block.expect("a log with entries has a block");
        let slot = self.slot(i as usize);
        // SAFETY: `slot < cap`, and the block holds `cap` entries of the log's width.
        unsafe {
            if self.wide {
                entries::<u64>(block).add(slot).read()
            } else {
                read_u64(block, 0) + u64::from(entries::<u32>(block).add(slot).read())
            }
        }
    }

    /// The oldest time, if any.
    #[inline]
    pub(crate) fn front(&self) -> Option<u64> {
        (self.len > 0).then(|| self.get(0))
    }

    /// The newest time, if any.
    #[inline]
    pub(crate) fn back(&self) -> Option<u64> {
        (self.len > 0).then(|| self.get(self.len() - 1))
    }

    /// The period the log was last used with (for its expiry), 0 without entries ever.
    #[inline]
    pub(crate) fn period(&self) -> u64 {
        // SAFETY: a block starts with its header.
        self.block.map_or(0, |block| unsafe { read_u64(block, 8) })
    }

    /// Records the period `p` and drops the oldest entries while they are out of the window
    /// at `t` (`oldest + p <= t`); stops at the first one inside, as a clock stepping back
    /// may leave older entries behind it.
    #[inline]
    pub(crate) fn expire(&mut self, t: u64, p: u64) {
        let Some(block) = self.block else {
            return;
        };
        // The next push writes after the newest entry, often in another cache line than the
        // oldest. A store that misses waits in the store buffer, which drains in order, so it
        // stalls everything behind it: the line is fetched now, beside the oldest entry's.
        let next = self.slot(self.len as usize) * if self.wide { 8 } else { 4 };
        // SAFETY: a block starts with its header, and `next` is within it (`slot < cap`).
        let base = unsafe {
            prefetch(block.as_ptr().add(HEADER + next));
            if read_u64(block, 8) != p {
                write_u64(block, 8, p);
            }
            read_u64(block, 0)
        };
        // `base + e + p <= t` for an entry e; nothing expires before `base + p`.
        let Some(limit) = t.checked_sub(base + p) else {
            return;
        };
        let len = self.len;
        if len == 0 {
            return;
        }
        let entry = |i: u32| {
            let slot = self.slot(i as usize);
            // SAFETY: `slot < cap`, and the block holds `cap` entries of the log's width.
            unsafe {
                if self.wide {
                    entries::<u64>(block).add(slot).read()
                } else {
                    u64::from(entries::<u32>(block).add(slot).read())
                }
            }
        };
        // A client under its rate drops none or one or two per request, unpredictably. A
        // branch on the entries would mispredict after they arrive (a cache miss), holding up
        // everything after it; so the first two are counted without one, and only a third
        // drop takes the loop.
        let first = entry(0) <= limit;
        let second = first & (entry(u32::from(len > 1)) <= limit) & (len > 1);
        let mut dropped = u32::from(first) + u32::from(second);
        if second {
            while dropped < len && entry(dropped) <= limit {
                dropped += 1;
            }
        }
        self.drop_front(u64::from(dropped));
    }

    /// Drops the `count` oldest entries (all of them if fewer).
    #[inline]
    pub(crate) fn drop_front(&mut self, count: u64) {
        let count = count.min(self.len()) as u32;
        self.head = self.slot(count as usize) as u32;
        self.len -= count;
    }

    /// Keeps the `keep` oldest entries.
    #[inline]
    pub(crate) fn truncate(&mut self, keep: u64) {
        self.len = keep.min(self.len()) as u32;
    }

    /// Removes the `count` entries that end just before the `end`-th oldest (`count <= end
    /// <= len`), the newer ones moving down in their place: a refund's, dated before them.
    pub(crate) fn remove_before(&mut self, end: u64, count: u64) {
        if count == 0 {
            return;
        }
        assert!(count <= end && end <= self.len(), "log range out of bounds");
        let block = self.block.expect("a log with entries has a block");
        for i in end..self.len() {
            let time = self.get(i);
            let slot = self.slot((i - count) as usize);
            // SAFETY: `slot < cap`, and the block holds `cap` entries of the log's width; the
            // time was an entry of this log, so it fits a narrow log's base.
            unsafe {
                if self.wide {
                    entries::<u64>(block).add(slot).write(time);
                } else {
                    let offset = (time - read_u64(block, 0)) as u32;
                    entries::<u32>(block).add(slot).write(offset);
                }
            }
        }
        self.len -= count as u32;
    }

    /// Appends `count` hits at `t`. `limit` (the rate's amount, which the log never exceeds)
    /// caps how far the ring grows ahead of need.
    ///
    /// # Panics
    /// If the log would hold more than `u32::MAX` entries, which no rate allows: the log holds
    /// at most the rate's amount, and amounts stop at [`crate::MAX_AMOUNT`].
    #[inline]
    pub(crate) fn push(&mut self, t: u64, count: u64, p: u64, limit: u64) {
        if count == 0 {
            return;
        }
        let needed = self.len().saturating_add(count);
        let fits = match self.block {
            Some(block) if needed <= u64::from(self.cap) => match (self.wide, self.len) {
                (true, len) => len > 0,
                // An empty narrow log moves its base to now.
                // SAFETY: a block starts with its header.
                (false, 0) => unsafe {
                    write_u64(block, 0, t);
                    self.head = 0;
                    true
                },
                // SAFETY: as above.
                (false, _) => fits(t, unsafe { read_u64(block, 0) }),
            },
            _ => false,
        };
        if !fits {
            self.make_room(t, needed, p, limit);
        }
        let block = self.block.expect("room was made");
        // SAFETY: `make_room` left room for `count` more entries, of the log's width, and a
        // narrow log's base at most `t` and within `u32::MAX` of it.
        unsafe {
            let offset = t - read_u64(block, 0);
            for i in self.len()..needed {
                let slot = self.slot(i as usize);
                if self.wide {
                    entries::<u64>(block).add(slot).write(t);
                } else {
                    entries::<u32>(block).add(slot).write(offset as u32);
                }
            }
        }
        self.len = needed as u32;
    }

    /// Drops the `drop` oldest entries, then appends `count` hits at `t` (see
    /// [`HitLog::push`]).
    #[inline]
    pub(crate) fn drop_then_push(&mut self, drop: u64, t: u64, count: u64, p: u64, limit: u64) {
        // One out, one in: what an elastic window records for each request of a client at its
        // limit, so the usual step of a client that keeps hammering.
        if count == 1 && drop == 1 && self.rotate(t) {
            return;
        }
        self.drop_front(drop);
        self.push(t, count, p, limit);
    }

    /// Drops the oldest entry and appends `t` in its place, the length unchanged: the same as
    /// `drop_front(1)` then `push(t, 1, ..)`, without their general bookkeeping. False, and
    /// nothing changed, on an empty log or when `t` does not fit a narrow log's base (that
    /// push makes room).
    #[inline]
    fn rotate(&mut self, t: u64) -> bool {
        let Some(block) = self.block.filter(|_| self.len > 0) else {
            return false;
        };
        // The slot after the newest: free when the ring has room to spare, else the oldest's
        // own, which is the one dropped.
        let slot = self.slot(self.len as usize);
        // SAFETY: `slot < cap`, and the block holds `cap` entries of the log's width.
        unsafe {
            if self.wide {
                entries::<u64>(block).add(slot).write(t);
            } else {
                let base = read_u64(block, 0);
                if !fits(t, base) {
                    return false;
                }
                entries::<u32>(block).add(slot).write((t - base) as u32);
            }
        }
        self.head = self.slot(1) as u32;
        true
    }

    /// The slow part of a push: a bigger ring, a new base, or wide entries (one copy each).
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, t: u64, needed: u64, p: u64, limit: u64) {
        let needed = u32::try_from(needed).expect("a moving window log over u32::MAX entries");
        let (wide, base) = if self.len == 0 {
            // An empty log starts over narrow, based at now.
            (false, t)
        } else if self.wide {
            (true, 0)
        } else if let Some(base) = self.base().filter(|&base| fits(t, base)) {
            // Only growing: the entries stay as they are.
            (false, base)
        } else {
            let (mut low, mut high) = (t, t);
            for i in 0..self.len() {
                let time = self.get(i);
                low = low.min(time);
                high = high.max(time);
            }
            if high - low <= u64::from(u32::MAX) {
                (false, low)
            } else {
                (true, 0)
            }
        };
        let cap = if wide == self.wide && needed <= self.cap {
            self.cap
        } else {
            // Doubling, so that a growing log copies each entry a bounded number of times;
            // but never far past what the rate lets the log hold.
            let target = u64::from(self.cap) * 2;
            let ceiling = limit.max(u64::from(needed));
            target.clamp(u64::from(needed), ceiling) as u32
        };
        *self = self.rebuilt(wide, base, cap, p);
    }

    /// A copy of this log in a new block of at least `cap >= len` entries of the given width
    /// and base (every entry must fit it), oldest at ring index 0.
    fn rebuilt(&self, wide: bool, base: u64, cap: u32, p: u64) -> HitLog {
        let (layout, cap) = block_layout(cap, wide);
        // SAFETY: the layout's size is at least a cache line.
        let raw = unsafe { alloc::alloc(layout) };
        let Some(block) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: the new block holds the header and `cap >= len` entries of width `wide`;
        // the old one `len` entries from `head`, wrapping at its `cap`. Converted entries are
        // checked to fit a narrow block's base.
        unsafe {
            write_u64(block, 0, base);
            write_u64(block, 8, p);
            let same = self
                .block
                .filter(|&old| wide == self.wide && read_u64(old, 0) == base);
            if let Some(old) = same {
                // Growing: the ring's two runs, copied as they are.
                let width = if wide { 8 } else { 4 };
                let first = (self.cap - self.head).min(self.len) as usize;
                let second = self.len as usize - first;
                let from = old.as_ptr().add(HEADER);
                let to = block.as_ptr().add(HEADER);
                std::ptr::copy_nonoverlapping(
                    from.add(self.head as usize * width),
                    to,
                    first * width,
                );
                std::ptr::copy_nonoverlapping(from, to.add(first * width), second * width);
            } else {
                for i in 0..self.len() {
                    let time = self.get(i);
                    if wide {
                        entries::<u64>(block).add(i as usize).write(time);
                    } else {
                        let offset = u32::try_from(time - base).expect("the entry fits the base");
                        entries::<u32>(block).add(i as usize).write(offset);
                    }
                }
            }
        }
        HitLog {
            block: Some(block),
            head: 0,
            len: self.len,
            cap,
            wide,
        }
    }

    /// The base of a narrow log's offsets.
    fn base(&self) -> Option<u64> {
        // SAFETY: a block starts with its header.
        self.block.map(|block| unsafe { read_u64(block, 0) })
    }

    /// The ring index of the `i`-th oldest entry.
    #[inline]
    fn slot(&self, i: usize) -> usize {
        let slot = self.head as usize + i;
        if slot >= self.cap as usize {
            slot - self.cap as usize
        } else {
            slot
        }
    }
}

impl Drop for HitLog {
    fn drop(&mut self) {
        if let Some(block) = self.block {
            let (layout, _) = block_layout(self.cap, self.wide);
            // SAFETY: the block was allocated with this layout (its capacity fills it).
            unsafe { alloc::dealloc(block.as_ptr(), layout) };
        }
    }
}

impl Clone for HitLog {
    fn clone(&self) -> Self {
        match self.block {
            Some(block) => {
                // SAFETY: a block starts with its header.
                let (base, period) = unsafe { (read_u64(block, 0), read_u64(block, 8)) };
                self.rebuilt(self.wide, base, self.cap, period)
            }
            None => HitLog::new(),
        }
    }
}

impl fmt::Debug for HitLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HitLog")
            .field(
                "times",
                &(0..self.len()).map(|i| self.get(i)).collect::<Vec<_>>(),
            )
            .field("period", &self.period())
            .field("wide", &self.wide)
            .finish()
    }
}

/// Whether `t` can be written as a `u32` offset from `base`.
#[inline]
fn fits(t: u64, base: u64) -> bool {
    t.checked_sub(base)
        .is_some_and(|offset| offset <= u64::from(u32::MAX))
}

/// The layout of a block with room for at least `cap` entries, and the entries it holds
/// (the most that fill its cache lines).
fn block_layout(cap: u32, wide: bool) -> (Layout, u32) {
    let width = if wide { 8 } else { 4 };
    let bytes = (HEADER + cap.max(1) as usize * width).next_multiple_of(LINE);
    let cap = u32::try_from((bytes - HEADER) / width).unwrap_or(u32::MAX);
    let layout = Layout::from_size_align(bytes, LINE).expect("a log block's layout");
    (layout, cap)
}

/// Asks for the cache line holding `at`, without waiting for it.
#[inline(always)]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing the program sees.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// The entries of a block, as `T`.
///
/// # Safety
/// `block` must be a live log block.
#[inline]
unsafe fn entries<T>(block: NonNull<u8>) -> *mut T {
    // SAFETY: the header lies within a live block.
    unsafe { block.as_ptr().add(HEADER).cast::<T>() }
}

/// # Safety
/// `block` must be a live log block; `at` is 0 (base) or 8 (period).
#[inline]
unsafe fn read_u64(block: NonNull<u8>, at: usize) -> u64 {
    // SAFETY: bytes `at..at + 8` are the block's header, aligned to 8.
    unsafe { block.as_ptr().add(at).cast::<u64>().read() }
}

/// # Safety
/// As [`read_u64`].
#[inline]
unsafe fn write_u64(block: NonNull<u8>, at: usize, value: u64) {
    // SAFETY: as in `read_u64`.
    unsafe { block.as_ptr().add(at).cast::<u64>().write(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000_000_000;
    const DAY: u64 = 86_400_000_000;
    const NO_LIMIT: u64 = u64::MAX;

    fn times(log: &HitLog) -> Vec<u64> {
        (0..log.len()).map(|i| log.get(i)).collect()
    }

    fn base(log: &HitLog) -> u64 {
        // SAFETY: the log has a block (every test pushes first).
        unsafe { read_u64(log.block.unwrap(), 0) }
    }

    #[test]
    fn an_empty_log_allocates_nothing_and_expires_nothing() {
        let mut log = HitLog::new();
        log.expire(T, 1);
        assert!(log.block.is_none());
        assert_eq!(
            (log.len(), log.front(), log.back(), log.period()),
            (0, None, None, 0)
        );
        log.push(T, 0, 1, 5);
        assert!(log.block.is_none());
    }

    #[test]
    fn a_block_fills_whole_cache_lines() {
        assert_eq!(
            block_layout(1, false),
            (Layout::from_size_align(64, 64).unwrap(), 12)
        );
        assert_eq!(block_layout(12, false).1, 12);
        assert_eq!(block_layout(13, false).1, 28);
        assert_eq!(block_layout(1, true).1, 6);
        assert_eq!(block_layout(7, true).1, 14);
        let mut log = HitLog::new();
        log.push(T, 1, 1, NO_LIMIT);
        assert_eq!(log.block.unwrap().as_ptr() as usize % LINE, 0);
    }

    #[test]
    fn the_ring_wraps_and_grows_keeping_the_order() {
        let mut log = HitLog::new();
        for i in 0..10 {
            log.push(T + i, 1, DAY, NO_LIMIT);
        }
        assert_eq!(log.cap, 12);
        log.drop_front(7);
        // Three left at ring indexes 7..10; nine more wrap around to index 0.
        for i in 10..19 {
            log.push(T + i, 1, DAY, NO_LIMIT);
        }
        assert_eq!(log.cap, 12);
        assert!(log.head + log.len > log.cap, "the ring wrapped");
        assert_eq!(times(&log), (7..19).map(|i| T + i).collect::<Vec<_>>());
        // Full and wrapped: growing copies both runs out in order (the base stays).
        log.push(T + 19, 2, DAY, NO_LIMIT);
        assert_eq!(log.cap, 28);
        assert_eq!(log.head, 0);
        assert_eq!(base(&log), T);
        let mut expected: Vec<u64> = (7..20).map(|i| T + i).collect();
        expected.push(T + 19);
        assert_eq!(times(&log), expected);
        assert_eq!((log.front(), log.back()), (Some(T + 7), Some(T + 19)));
    }

    #[test]
    fn growth_of_an_unwrapped_ring_and_of_a_wide_one() {
        let mut log = HitLog::new();
        for i in 0..12 {
            log.push(T + i, 1, DAY, NO_LIMIT);
        }
        assert_eq!((log.head, log.len, log.cap), (0, 12, 12));
        log.push(T + 12, 1, DAY, NO_LIMIT);
        assert_eq!(times(&log), (0..13).map(|i| T + i).collect::<Vec<_>>());
        let mut log = HitLog::new();
        log.push(T, 1, DAY, NO_LIMIT);
        log.push(T + (1 << 33), 1, DAY, NO_LIMIT);
        assert!(log.wide);
        let cap = log.cap;
        log.drop_front(1);
        for i in 0..u64::from(cap) {
            log.push(T + (1 << 33) + i, 1, DAY, NO_LIMIT);
        }
        assert!(log.wide && log.cap > cap);
        let mut expected = vec![T + (1 << 33)];
        expected.extend((0..u64::from(cap)).map(|i| T + (1 << 33) + i));
        assert_eq!(times(&log), expected);
    }

    #[test]
    fn remove_before_closes_the_gap_in_a_wrapped_ring_narrow_or_wide() {
        for step in [1, 1 << 30] {
            let mut log = HitLog::new();
            for i in 0..10 {
                log.push(T + i * step, 1, DAY, NO_LIMIT);
            }
            log.drop_front(7);
            for i in 10..16 {
                log.push(T + i * step, 1, DAY, NO_LIMIT);
            }
            if step == 1 {
                assert!(log.head + log.len > log.cap, "the ring wrapped");
            } else {
                assert!(log.wide);
            }
            // Entries 7..16; drop the two just before the 5th oldest (entries 10 and 11).
            log.remove_before(5, 2);
            let want: Vec<u64> = [7, 8, 9, 12, 13, 14, 15]
                .iter()
                .map(|i| T + i * step)
                .collect();
            assert_eq!(times(&log), want, "step {step}");
            log.remove_before(7, 0);
            log.remove_before(2, 2);
            assert_eq!(times(&log), want[2..].to_vec(), "step {step}");
        }
    }

    #[test]
    fn growth_stops_near_the_limit() {
        let mut log = HitLog::new();
        log.push(T, 12, 1, 20);
        log.push(T, 1, 1, 20);
        // Doubling would ask for 24; the rate never lets the log past 20 (28 fill the lines).
        assert_eq!(log.cap, 28);
        let mut log = HitLog::new();
        log.push(T, 28, 1, 100);
        log.push(T, 1, 1, 100);
        assert_eq!(log.cap, 60);
    }

    #[test]
    fn expire_drops_the_front_while_it_is_out_of_the_window() {
        let mut log = HitLog::new();
        for at in [10, 20, 5, 30] {
            log.push(T + at, 1, 10, NO_LIMIT);
        }
        log.expire(T + 29, 10);
        assert_eq!(times(&log), [T + 20, T + 5, T + 30]);
        // 20 is out at T + 30, and so is 5 once it is at the front.
        log.expire(T + 30, 10);
        assert_eq!(times(&log), [T + 30]);
        assert_eq!(log.period(), 10);
        log.expire(T + 40, 10);
        assert_eq!(log.len(), 0);
        // A time before the base expires nothing (no underflow).
        let mut log = HitLog::new();
        log.push(T, 1, 10, NO_LIMIT);
        log.expire(5, 10);
        assert_eq!(times(&log), [T]);
    }

    #[test]
    fn an_out_of_order_entry_behind_the_front_stays() {
        let mut log = HitLog::new();
        log.push(T + 100, 1, 10, NO_LIMIT);
        log.push(T, 1, 10, NO_LIMIT);
        log.expire(T + 50, 10);
        assert_eq!(times(&log), [T + 100, T]);
    }

    #[test]
    fn offsets_reach_u32_max_from_the_base_then_the_log_widens() {
        let mut log = HitLog::new();
        log.push(T, 1, DAY, NO_LIMIT);
        log.push(T + u64::from(u32::MAX), 1, DAY, NO_LIMIT);
        assert!(!log.wide);
        assert_eq!(base(&log), T);
        // A span of 2^32 µs no longer fits a u32 offset.
        log.push(T + (1 << 32), 1, DAY, NO_LIMIT);
        assert!(log.wide);
        assert_eq!(times(&log), [T, T + u64::from(u32::MAX), T + (1 << 32)]);
        assert_eq!(
            log.back().map(|newest| newest + log.period()),
            Some(T + (1 << 32) + DAY)
        );
    }

    #[test]
    fn the_base_moves_to_the_oldest_entry_when_now_is_too_far_ahead() {
        let mut log = HitLog::new();
        log.push(T, 1, 1_000, NO_LIMIT);
        log.push(T + 700, 2, 1_000, NO_LIMIT);
        log.expire(T + 1_500, 1_000);
        assert_eq!(base(&log), T);
        let late = T + 700 + u64::from(u32::MAX);
        log.push(late, 1, 1_000, NO_LIMIT);
        assert!(!log.wide);
        assert_eq!(base(&log), T + 700);
        assert_eq!(times(&log), [T + 700, T + 700, late]);
        // One microsecond more would not fit from T + 700: the span itself is too wide.
        log.push(late + 1, 1, 1_000, NO_LIMIT);
        assert!(log.wide);
        assert_eq!(times(&log), [T + 700, T + 700, late, late + 1]);
    }

    #[test]
    fn a_clock_stepping_back_moves_the_base_down_or_widens() {
        let mut log = HitLog::new();
        log.push(T, 1, 1_000, NO_LIMIT);
        log.push(T - 5, 1, 1_000, NO_LIMIT);
        assert!(!log.wide);
        assert_eq!(base(&log), T - 5);
        assert_eq!(times(&log), [T, T - 5]);
        log.push(T - 5 - (1 << 32), 1, 1_000, NO_LIMIT);
        assert!(log.wide);
        assert_eq!(times(&log), [T, T - 5, T - 5 - (1 << 32)]);
    }

    #[test]
    fn an_emptied_log_starts_over_narrow_at_now() {
        let mut log = HitLog::new();
        log.push(T, 1, 10, NO_LIMIT);
        log.push(T + (1 << 33), 1, 10, NO_LIMIT);
        assert!(log.wide);
        log.expire(T + (1 << 34), 10);
        assert_eq!(log.len(), 0);
        log.push(T + (1 << 34), 3, 10, NO_LIMIT);
        assert!(!log.wide);
        assert_eq!(base(&log), T + (1 << 34));
        assert_eq!(times(&log), [T + (1 << 34); 3]);
        // Narrow and empty: the base moves without a new block.
        let block = log.block;
        log.drop_front(3);
        log.push(T + (1 << 35), 1, 10, NO_LIMIT);
        assert_eq!(log.block, block);
        assert_eq!(base(&log), T + (1 << 35));
        assert_eq!(times(&log), [T + (1 << 35)]);
    }

    #[test]
    fn rotate_is_drop_front_then_push_or_refuses() {
        // Full rings (cap 12, the slot after the newest is the oldest's) and rings with room,
        // wrapped or not, narrow and wide: the same times as the two general steps.
        for (len, dropped, wide) in [
            (12, 0, false),
            (12, 5, false),
            (10, 0, false),
            (10, 7, false),
            (10, 7, true),
        ] {
            let mut log = HitLog::new();
            for i in 0..len {
                log.push(T + i, 1, DAY, NO_LIMIT);
            }
            // Dropped and pushed again: the ring wraps.
            log.drop_front(dropped);
            for i in 0..dropped {
                log.push(T + len + i, 1, DAY, NO_LIMIT);
            }
            if wide {
                log.drop_front(1);
                log.push(T + (1 << 33), 1, DAY, NO_LIMIT);
            }
            assert_eq!((log.len(), log.wide), (len, wide));
            if !wide {
                assert_eq!((log.cap, log.head), (12, dropped as u32));
            }
            let mut expected = log.clone();
            let at = T + (1 << 33) + 100;
            let at = if wide { at } else { T + 100 };
            assert!(log.rotate(at), "{len} {dropped} {wide}");
            expected.drop_front(1);
            expected.push(at, 1, DAY, NO_LIMIT);
            assert_eq!(times(&log), times(&expected), "{len} {dropped} {wide}");
            assert_eq!(log.len(), len);
        }
        // Nothing to drop, or a time off a narrow log's base: refused, the log unchanged.
        assert!(!HitLog::new().rotate(T));
        let mut log = HitLog::new();
        log.push(T, 2, DAY, NO_LIMIT);
        for off_base in [T - 1, T + (1 << 32)] {
            assert!(!log.rotate(off_base));
            assert_eq!(times(&log), [T, T]);
        }
    }

    #[test]
    fn truncate_drops_the_newest() {
        let mut log = HitLog::new();
        for i in 0..5 {
            log.push(T + i, 1, 10, NO_LIMIT);
        }
        log.truncate(2);
        assert_eq!(times(&log), [T, T + 1]);
        log.truncate(7);
        assert_eq!(log.len(), 2);
        log.push(T + 9, 1, 10, NO_LIMIT);
        assert_eq!(times(&log), [T, T + 1, T + 9]);
    }

    #[test]
    fn a_clone_is_equal_and_independent() {
        for wide in [false, true] {
            let mut log = HitLog::new();
            for i in 0..20 {
                log.push(T + i, 1, 10, NO_LIMIT);
            }
            log.drop_front(15);
            for i in 20..30 {
                log.push(T + i, 1, 10, NO_LIMIT);
            }
            if wide {
                log.push(T + (1 << 33), 1, 10, NO_LIMIT);
            }
            assert_eq!(log.wide, wide);
            let mut copy = log.clone();
            assert_eq!(times(&copy), times(&log));
            assert_eq!((copy.period(), copy.wide), (log.period(), log.wide));
            copy.push(T + 40, 1, 10, NO_LIMIT);
            copy.drop_front(1);
            assert_eq!(times(&log)[0], T + 15);
            assert_eq!(times(&copy)[0], T + 16);
        }
        assert!(HitLog::new().clone().block.is_none());
    }

    #[test]
    #[should_panic(expected = "out of")]
    fn an_index_past_the_length_panics() {
        let mut log = HitLog::new();
        log.push(T, 2, 10, NO_LIMIT);
        log.get(2);
    }
}
