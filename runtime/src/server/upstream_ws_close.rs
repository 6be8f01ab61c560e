//! Closing a relayed WebSocket when the server shuts down: each end gets a
//! close frame (1001, going away) between two frames of its stream, never
//! inside one, and the relay waits briefly for each end's close in reply
//! before it drops the connections.
//!
//! The relay copies bytes without parsing frames (`upstream_ws`); it runs
//! each direction's bytes through [`Frames`], which reads only frame heads,
//! so it knows at any moment whether a direction is between two frames and
//! whether a close frame has gone through it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long each step of the close may take: finishing the frames in
/// flight, then waiting for the ends' replies.
const STEP: Duration = Duration::from_secs(2);

/// The status code of the host's close frames: the server is going away.
const GOING_AWAY: [u8; 2] = 1001u16.to_be_bytes();

/// One direction of a relayed WebSocket as a stream of frames.
#[derive(Debug, Default)]
pub(super) struct Frames {
    /// The current frame's head, as much as has gone through (at most 14
    /// bytes: 2, 8 of extended length, 4 of mask).
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to go through.
    left: u64,
    /// A close frame has started in this direction.
    pub(super) closed: bool,
}

impl Frames {
    /// Between two frames.
    pub(super) fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    /// Follows `data` through the frames. With `to_boundary`, stops at the
    /// end of the current frame (at once when between two): the answer is
    /// how many bytes of `data` belong before that point (all of them
    /// otherwise).
    pub(super) fn advance(&mut self, data: &[u8], to_boundary: bool) -> usize {
        let mut i = 0;
        while i < data.len() {
            if self.left > 0 {
                let n =
                    usize::try_from(self.left).map_or(data.len() - i, |l| l.min(data.len() - i));
                i += n;
                self.left -= n as u64;
                if self.left == 0 && to_boundary {
                    return i;
                }
                continue;
            }
            if to_boundary && self.have == 0 {
                return i;
            }
            self.head[self.have] = data[i];
            self.have += 1;
            i += 1;
            if self.head_len() == Some(self.have) {
                self.closed |= self.head[0] & 0x0f == 0x8;
                self.left = self.payload_len();
                self.have = 0;
                if self.left == 0 && to_boundary {
                    return i;
                }
            }
        }
        i
    }

    /// The head's length, once its first two bytes are known.
    fn head_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let extended = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        Some(2 + extended + mask)
    }

    fn payload_len(&self) -> u64 {
        match self.head[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&self.head[2..10]);
                u64::from_be_bytes(len)
            }
            n => u64::from(n),
        }
    }
}

/// A close frame with status 1001: unmasked for the client (the host is
/// its server), masked for the upstream (the host is its client).
fn close_frame(masked: bool) -> Vec<u8> {
    if !masked {
        return vec![0x88, 0x02, GOING_AWAY[0], GOING_AWAY[1]];
    }
    let mut key = [0u8; 4];
    // A fixed key still frames correctly; a random one is what RFC 6455 asks.
    let _ = getrandom::fill(&mut key);
    vec![
        0x88,
        0x82,
        key[0],
        key[1],
        key[2],
        key[3],
        GOING_AWAY[0] ^ key[0],
        GOING_AWAY[1] ^ key[1],
    ]
}

/// One end of the relay: what it sends, where the host writes to it.
pub(super) struct End<'a, R, W> {
    pub(super) read: &'a mut R,
    pub(super) write: &'a mut W,
    /// The frames this end sends.
    pub(super) sent: &'a mut Frames,
    pub(super) buf: &'a mut [u8],
}

/// Ends a relay at shutdown, when no close frame has gone through it yet
/// (a closing handshake under way is left to finish by the relay): each
/// direction is let reach the end of the frame in flight (bytes past it
/// are dropped), each end gets a close frame, and its close in reply is
/// read. Each step is bounded by [`STEP`].
pub(super) async fn going_away<CR, CW, UR, UW>(
    mut client: End<'_, CR, CW>,
    mut upstream: End<'_, UR, UW>,
) where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let finish = async {
        finish_frame(&mut client, &mut upstream).await;
        finish_frame(&mut upstream, &mut client).await;
    };
    if tokio::time::timeout(STEP, finish).await.is_ok() {
        let _ = client.write.write_all(&close_frame(false)).await;
        let _ = upstream.write.write_all(&close_frame(true)).await;
        // The replies are read (and dropped): a connection closed with
        // unread bytes is reset, and the reset could overtake the close.
        let replies = async {
            tokio::join!(await_close(&mut client), await_close(&mut upstream));
        };
        let _ = tokio::time::timeout(STEP, replies).await;
    }
    let _ = client.write.shutdown().await;
    let _ = upstream.write.shutdown().await;
}

/// Relays `from`'s bytes to `to` up to the end of the frame `from` is in.
async fn finish_frame<AR, AW, BR, BW>(from: &mut End<'_, AR, AW>, to: &mut End<'_, BR, BW>)
where
    AR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    while !from.sent.at_boundary() {
        let n = match from.read.read(from.buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let take = from.sent.advance(&from.buf[..n], true);
        if to.write.write_all(&from.buf[..take]).await.is_err() {
            return;
        }
    }
}

/// Reads (and drops) what `end` sends until its close frame or its end.
async fn await_close<R: AsyncRead + Unpin, W>(end: &mut End<'_, R, W>) {
    while !end.sent.closed {
        match end.read.read(end.buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                end.sent.advance(&end.buf[..n], false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with a `len`-byte payload, masked or not.
    fn frame(opcode: u8, len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        let mask = if masked { 0x80 } else { 0 };
        match len {
            0..=125 => f.push(mask | len as u8),
            126..=65535 => {
                f.push(mask | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(mask | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    #[test]
    fn frame_boundaries_are_found_in_any_split() {
        let mut stream = frame(0x1, 5, true);
        stream.extend(frame(0x2, 300, false));
        stream.extend(frame(0x2, 70_000, true));
        stream.extend(frame(0x8, 2, true));
        let ends = [
            frame(0x1, 5, true).len(),
            frame(0x1, 5, true).len() + frame(0x2, 300, false).len(),
            stream.len() - frame(0x8, 2, true).len(),
            stream.len(),
        ];
        for chunk in [1, 2, 3, 7, 100, 4096, stream.len()] {
            let mut frames = Frames::default();
            let mut seen = Vec::new();
            let mut at = 0;
            for piece in stream.chunks(chunk) {
                let mut off = 0;
                while off < piece.len() {
                    let n = frames.advance(&piece[off..], true);
                    off += n;
                    at += n;
                    if n > 0 && frames.at_boundary() {
                        seen.push(at);
                    }
                    if n == 0 {
                        // At a boundary: step over the next frame's first byte.
                        let n = frames.advance(&piece[off..off + 1], false);
                        off += n;
                        at += n;
                    }
                }
            }
            assert_eq!(seen, ends, "chunks of {chunk}");
            assert!(frames.closed, "chunks of {chunk}");
        }
    }

    #[test]
    fn the_close_frames_carry_going_away() {
        assert_eq!(close_frame(false), [0x88, 0x02, 0x03, 0xE9]);
        let masked = close_frame(true);
        assert_eq!(masked[..2], [0x88, 0x82]);
        assert_eq!(masked[6] ^ masked[2], 0x03);
        assert_eq!(masked[7] ^ masked[3], 0xE9);
    }
}
