//! Merges are data: one value per side (base, local, remote) in one generic type, with
//! trivial resolution as a method instead of an if-chain at every call site. Modelled on
//! jj's `Merge<T>`, specialised to exactly two sides and one base.

/// The base, local and remote values of one thing (a path's content, a subtree's id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Merge<T> {
    /// The value both sides last agreed on.
    pub base: T,
    /// The value on this machine now.
    pub local: T,
    /// The value in the bucket now.
    pub remote: T,
}

impl<T> Merge<T> {
    /// A merge of the three values.
    pub const fn new(base: T, local: T, remote: T) -> Self {
        Self { base, local, remote }
    }

    /// A merge whose three sides are one value: nothing changed anywhere.
    pub fn resolved(value: T) -> Self
    where
        T: Clone,
    {
        Self { base: value.clone(), local: value.clone(), remote: value }
    }

    /// Borrows each side.
    pub const fn as_ref(&self) -> Merge<&T> {
        Merge { base: &self.base, local: &self.local, remote: &self.remote }
    }

    /// Applies `f` to each side (base, then local, then remote).
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Merge<U> {
        Merge { base: f(self.base), local: f(self.local), remote: f(self.remote) }
    }

    /// Exchanges local and remote. Resolution is symmetric, so every decision made on
    /// the swapped merge is the mirror image of the one made on this one.
    #[must_use]
    pub fn swap(self) -> Self {
        Self { base: self.base, local: self.remote, remote: self.local }
    }

    /// The three sides, base first.
    pub fn into_array(self) -> [T; 3] {
        [self.base, self.local, self.remote]
    }
}

impl<T: PartialEq> Merge<T> {
    /// The merged value when at most one side changed, or both changed the same way:
    /// local == base gives remote, remote == base gives local, local == remote gives
    /// local. `None` means a conflict: all three differ.
    pub fn resolve_trivial(&self) -> Option<&T> {
        if self.local == self.base {
            Some(&self.remote)
        } else if self.remote == self.base || self.local == self.remote {
            Some(&self.local)
        } else {
            None
        }
    }

    /// Whether all three sides are equal (nothing to do, nothing to look into).
    pub fn is_unchanged(&self) -> bool {
        self.local == self.base && self.remote == self.base
    }

    /// Whether the local side differs from base.
    pub fn local_changed(&self) -> bool {
        self.local != self.base
    }

    /// Whether the remote side differs from base.
    pub fn remote_changed(&self) -> bool {
        self.remote != self.base
    }
}

impl<T> Merge<Option<T>> {
    /// Whether any side is present and satisfies `pred`.
    pub fn any_some(&self, pred: impl FnMut(&T) -> bool) -> bool {
        [&self.base, &self.local, &self.remote].into_iter().flatten().any(pred)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Merge;

    /// Values from a tiny alphabet, so that equal sides are common.
    fn merge_strategy() -> impl Strategy<Value = Merge<Option<u8>>> {
        let v = prop::option::of(0u8..3);
        (v.clone(), v.clone(), v).prop_map(|(b, l, r)| Merge::new(b, l, r))
    }

    #[test]
    fn trivial_cases() {
        // One side changed: take it. Both changed alike: take it. Both differently: none.
        assert_eq!(Merge::new(1, 1, 2).resolve_trivial(), Some(&2));
        assert_eq!(Merge::new(1, 2, 1).resolve_trivial(), Some(&2));
        assert_eq!(Merge::new(1, 2, 2).resolve_trivial(), Some(&2));
        assert_eq!(Merge::new(1, 1, 1).resolve_trivial(), Some(&1));
        assert_eq!(Merge::new(1, 2, 3).resolve_trivial(), None);
        // Absence is a value like any other: a deletion on one side resolves to absent.
        assert_eq!(Merge::new(Some(1), None, Some(1)).resolve_trivial(), Some(&None));
        assert_eq!(Merge::new(Some(1), None, Some(2)).resolve_trivial(), None);
        assert_eq!(Merge::new(None, Some(1), Some(2)).resolve_trivial(), None);
    }

    #[test]
    fn helpers() {
        let m = Merge::new(1, 2, 3);
        assert_eq!(m.swap(), Merge::new(1, 3, 2));
        assert_eq!(m.map(|x| x * 10), Merge::new(10, 20, 30));
        assert_eq!(m.as_ref().map(|x| *x + 1), Merge::new(2, 3, 4));
        assert_eq!(m.into_array(), [1, 2, 3]);
        assert!(Merge::resolved(7).is_unchanged());
        assert!(m.local_changed() && m.remote_changed());
        assert!(Merge::new(Some(1), None, None).any_some(|&v| v == 1));
        assert!(!Merge::<Option<u8>>::new(None, None, None).any_some(|_| true));
    }

    proptest! {
        /// Swapping the sides never changes the outcome.
        #[test]
        fn symmetric(m in merge_strategy()) {
            prop_assert_eq!(m.resolve_trivial().copied(), m.swap().resolve_trivial().copied());
        }

        /// A resolution is stable: once both sides hold it, it is the new base and
        /// resolving again changes nothing.
        #[test]
        fn idempotent(m in merge_strategy()) {
            if let Some(&v) = m.resolve_trivial() {
                prop_assert_eq!(Merge::resolved(v).resolve_trivial().copied(), Some(v));
                prop_assert_eq!(Merge::new(m.base, v, v).resolve_trivial().copied(), Some(v));
            }
        }

        /// One-sided changes win; identical changes never conflict.
        #[test]
        fn trivial_laws(b in prop::option::of(0u8..3), x in prop::option::of(0u8..3)) {
            prop_assert_eq!(Merge::new(b, b, x).resolve_trivial().copied(), Some(x));
            prop_assert_eq!(Merge::new(b, x, b).resolve_trivial().copied(), Some(x));
            prop_assert_eq!(Merge::new(b, x, x).resolve_trivial().copied(), Some(x));
        }

        /// A conflict is exactly three pairwise different values, and the result is
        /// always one of the sides that changed (or base, when none did).
        #[test]
        fn conflicts_and_provenance(m in merge_strategy()) {
            let distinct = m.base != m.local && m.base != m.remote && m.local != m.remote;
            prop_assert_eq!(m.resolve_trivial().is_none(), distinct);
            if let Some(v) = m.resolve_trivial() {
                prop_assert!(v == &m.local || v == &m.remote);
                if m.is_unchanged() {
                    prop_assert_eq!(v, &m.base);
                }
            }
        }

        /// Resolution commutes with any injective map of the values.
        #[test]
        fn commutes_with_injective_map(m in merge_strategy()) {
            let f = |v: Option<u8>| v.map(|x| u16::from(x) * 7 + 1);
            prop_assert_eq!(m.map(f).resolve_trivial().copied(), m.resolve_trivial().copied().map(f));
        }
    }
}
