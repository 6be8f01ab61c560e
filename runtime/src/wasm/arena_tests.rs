//! Unit tests of the arena (`arena.rs`).

use super::*;

#[test]
fn handles_are_never_zero_and_lengths_track_blocks() {
    let mut a = Arena::new(1024);
    let h1 = a.alloc(10).unwrap();
    let h2 = a.alloc(3).unwrap();
    assert!(h1 > 0 && h2 > h1);
    assert_eq!(a.length(h1), 10);
    assert_eq!(a.length(h2), 3);
    assert_eq!(a.length(h1 + 1), 0, "interior offsets are not handles");
    assert_eq!(a.alloc(0), None);
}

#[test]
fn the_limit_is_enforced() {
    let mut a = Arena::new(1000);
    assert!(a.alloc(400).is_some());
    assert_eq!(a.alloc(400), None);
}

#[test]
fn freed_blocks_are_reused_and_split() {
    let mut a = Arena::new(1 << 16);
    let big = a.alloc(1000).unwrap();
    a.free(big);
    assert_eq!(a.length(big), 0);
    let small = a.alloc(10).unwrap();
    assert_eq!(small, big, "the freed block is reused");
    let next = a.alloc(500).unwrap();
    assert_eq!(next, big + 10, "the remainder was split off");
    assert_eq!(a.size(), RESERVED + 1000);
}

#[test]
fn accesses_outside_the_arena_read_zero_and_write_nothing() {
    let mut a = Arena::new(1024);
    let h = a.alloc_bytes(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    assert_eq!(a.load_u64(h), 0x0807_0605_0403_0201);
    assert_eq!(
        a.load_u64(h + 1),
        0x08_0706_0504_0302,
        "past the blocks: zeros"
    );
    assert_eq!(a.load_u64(1024 - 7), 0, "one byte past the arena: all zero");
    a.store_u64(1024 - 8, u64::MAX);
    assert_eq!(a.load_u8(1023), 0xff, "the last byte of the arena");
    a.store_u64(1024 - 7, 1);
    assert_eq!(a.load_u8(1023), 0xff, "a store one byte past: ignored");
    assert_eq!(a.load_u8(0), 0, "the header is not addressable");
    assert_eq!(a.load_u64(u64::MAX - 3), 0, "overflow is caught");
    a.store_u64(u64::MAX - 3, 1);
    a.store_u8(8, 0xff);
    assert_eq!(
        a.slice(0, RESERVED as u64),
        Err(ArenaError::OutOfBounds {
            offset: 0,
            len: RESERVED as u64,
            size: a.size() as u64
        })
    );
    assert!(a.slice(h, u64::MAX).is_err());
    assert!(a.block(12345).is_err());
    assert!(a.copy_out(1000, 25).is_none());
    assert!(!a.output_in_bounds(1000, 25));
    assert_eq!(
        a.copy_out(h, 9).as_deref(),
        Some(&[1, 2, 3, 4, 5, 6, 7, 8, 0][..])
    );
    assert!(a.output_in_bounds(h + 1, 0));
    assert!(!a.output_in_bounds(0, 0));
}

#[test]
fn every_block_is_charged_against_the_limit() {
    let limit = 64 << 10;
    let mut a = Arena::new(limit);
    let mut n = 0;
    while a.alloc(1).is_some() {
        n += 1;
    }
    assert!(n <= limit / (1 + BLOCK_COST), "{n} one-byte blocks");
    assert!(a.charged() <= limit);
    assert!(n > limit / (2 * (1 + BLOCK_COST)));
}

#[test]
fn many_free_blocks_do_not_slow_an_allocation_down() {
    let mut a = Arena::new(64 << 20);
    let handles: Vec<u64> = (0..50_000).map(|_| a.alloc(8).unwrap()).collect();
    for h in &handles {
        a.free(*h);
    }
    // Each of these misses every free block; a scan would make this
    // 2.5 billion steps.
    for _ in 0..50_000 {
        assert!(a.alloc(16).is_some());
    }
    // And a freed size is found again.
    assert_eq!(a.alloc(8), Some(*handles.last().unwrap()));
}

#[test]
fn a_split_remainder_is_a_block_of_its_own_once_reused() {
    let mut a = Arena::new(1 << 16);
    let big = a.alloc(1000).unwrap();
    let after = a.alloc(8).unwrap();
    a.free(big);
    let first = a.alloc(200).unwrap();
    let second = a.alloc(300).unwrap();
    assert_eq!((first, second), (big, big + 200));
    assert_eq!(a.length(second), 300);
    a.free(second);
    assert_eq!(a.length(second), 0);
    assert_eq!(a.alloc(300), Some(second));
    assert_eq!(a.length(after), 8);
}

#[test]
fn reset_forgets_everything() {
    let mut a = Arena::new(1024);
    let h = a.alloc_bytes(b"abc").unwrap();
    a.reset();
    assert_eq!(a.length(h), 0);
    assert_eq!(a.size(), RESERVED);
}
