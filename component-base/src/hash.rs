//! FNV-1a, 32 bits: the hash upstream uses for pod-template-hash and the
//! kubelet's container hash (Go's `hash/fnv.New32a`).

/// An FNV-32a hasher fed in pieces.
#[derive(Clone, Copy, Debug)]
pub struct Fnv32a(u32);

impl Default for Fnv32a {
    fn default() -> Self {
        Fnv32a(0x811c_9dc5)
    }
}

impl Fnv32a {
    /// Feeds `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    /// The hash so far.
    pub fn finish(self) -> u32 {
        self.0
    }
}

/// FNV-32a of `bytes`.
pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h = Fnv32a::default();
    h.write(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        assert_eq!(super::fnv32a(b""), 0x811c_9dc5);
        assert_eq!(super::fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(super::fnv32a(b"foobar"), 0xbf9c_f968);
    }
}
