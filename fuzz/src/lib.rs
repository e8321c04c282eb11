//! What the session targets share: a choice stream that the fuzzer's bytes
//! drive, so a target can make every decision a runtime or a node makes
//! (chunk sizes, refusals, timings) from the input.

/// Choices taken from a byte string, cycling; all zeros once it is empty.
pub struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Choices<'a> {
    /// Splits `data` into choices and the rest: the first byte says how
    /// many bytes after it are choices (up to 63).
    pub fn split(data: &'a [u8]) -> (Choices<'a>, &'a [u8]) {
        let Some((&n, rest)) = data.split_first() else {
            return (Choices { bytes: &[], at: 0 }, &[]);
        };
        let n = usize::from(n % 64).min(rest.len());
        (Choices { bytes: &rest[..n], at: 0 }, &rest[n..])
    }

    /// The next choice byte.
    pub fn byte(&mut self) -> u8 {
        if self.bytes.is_empty() {
            return 0;
        }
        let b = self.bytes[self.at % self.bytes.len()];
        self.at += 1;
        b
    }

    /// A number in `1..=max`.
    pub fn chunk(&mut self, max: usize) -> usize {
        1 + usize::from(self.byte()) % max.max(1)
    }
}

/// The frames at the start of `bytes`, and where they end: what a peer
/// reading them would see.
pub fn client_frames(mut bytes: &[u8]) -> (Vec<leasetso_core::Frame>, usize) {
    let mut frames = Vec::new();
    let mut used = 0;
    while let Ok(Some((frame, n))) = leasetso_core::Frame::decode(bytes) {
        frames.push(frame);
        used += n;
        bytes = &bytes[n..];
    }
    (frames, used)
}
