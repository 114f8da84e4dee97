//! A linearizability checker for histories of single-key operations (put, get,
//! compare-and-swap) recorded by concurrent clients of a key-value store.
//!
//! # Model
//!
//! Every key is an independent register whose initial state is "absent".
//! `Put` sets the value, `Get` must return the current value (or `None` when
//! absent), and `Cas { expect, new }` succeeds iff the current value equals
//! `expect` (`expect: None` meaning "the key is absent"), in which case the
//! value becomes `new`. An operation whose outcome the client does not know
//! ([`Outcome::Unknown`], e.g. a timeout) may or may not have taken effect, at
//! any moment after its invocation: its response time is treated as +infinity
//! and it may equally be left out of the linearization. An unknown `Get`
//! constrains nothing and is dropped.
//!
//! # Algorithm
//!
//! The search is the one of Wing & Gong ("Testing and verifying concurrent
//! objects", J. Parallel Distrib. Comput. 17, 1993) in the form popularised by
//! Lowe and by Porcupine (Anish Athalye, <https://github.com/anishathalye/porcupine>):
//!
//! 1. **P-compositionality.** Linearizability is local (Herlihy & Wing), so the
//!    history is partitioned by key and each sub-history is checked on its own.
//!    The state space of one key is tiny compared to the product of all keys.
//! 2. **Just-in-time linearization.** The call and return events of a key are
//!    put in one doubly linked list sorted by time (calls before returns at equal
//!    timestamps, so `a.ret == b.call` counts as concurrent; unknown returns sit
//!    at +infinity). A depth-first search walks the list from its head: a call
//!    entry whose operation is legal in the current model state is
//!    *linearized* — the call and its return are unlinked ("lifted") and the
//!    search restarts at the head; reaching a return entry means that operation
//!    returned without having been linearized, so the search backtracks (pops
//!    the last linearized operation, relinks it and tries the next candidate).
//!    This only ever linearizes operations that are minimal in the real-time
//!    order, hence every explored order respects "if `a.ret < b.call` then `a`
//!    precedes `b`".
//! 3. **Memoisation.** The pair (bitmask of linearized operations, model
//!    state) fully determines the rest of the search, so every pair is explored
//!    at most once; revisiting a cached pair is pruned. The model state is an
//!    interned value id, so cache entries are a few machine words.
//! 4. **Normal form for unknown operations** (an addition to Porcupine, which
//!    otherwise explodes on histories with many timed-out writes). An unknown
//!    write can always be moved to the very end of a linearization (its response
//!    is at +infinity and nothing can be ordered after it), where its effect is
//!    unobservable. Hence, if any linearization exists, one exists in which
//!    every unknown operation that is linearized *before the last known
//!    operation* changes the state, is followed only by a known `Get`/`Cas`
//!    (never by a known `Put`, which would overwrite it) or by an unknown `Cas`
//!    that swaps, and an unknown `Put` never directly follows another unknown
//!    operation. The search only explores such orders (the "previous operation
//!    was unknown" flag is therefore part of the memo key) and stops as soon as
//!    every known operation is linearized: the remaining unknown operations go
//!    at the end. Without this, `k` pending unobserved timeouts cost `2^k`.
//!
//! The worst case is still exponential (the problem is NP-complete), so the
//! search is bounded by a wall-clock budget and reports [`Verdict::Timeout`]
//! when it runs out. On failure the verdict names the key and the operations
//! that could not be ordered at the deepest point the search reached.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// An operation a client issued against a single key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// Unconditionally write `value` to the key.
    Put {
        /// The value written.
        value: String,
    },
    /// Read the key.
    Get,
    /// Compare-and-swap: write `new` iff the key currently holds `expect`.
    Cas {
        /// The value the key must hold for the swap to happen; `None` means
        /// "the key must be absent".
        expect: Option<String>,
        /// The value written when the comparison holds.
        new: String,
    },
}

/// Outcome of an operation as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Put acknowledged.
    PutOk,
    /// Get returned this value (None = key absent).
    GetOk(Option<String>),
    /// Compare-and-swap: true if the swap happened, false if the comparison failed.
    CasOk(bool),
    /// The client does not know whether it took effect (timeout, connection lost).
    /// Such an operation may or may not have happened, at any time after its call;
    /// treat its return time as +infinity.
    Unknown,
}

/// One operation of a recorded history: who issued what against which key,
/// what came back, and when (nanoseconds on a clock shared by all clients).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    /// Identifier of the issuing client (only used in diagnostics).
    pub client: usize,
    /// The key the operation addressed.
    pub key: String,
    /// The operation requested.
    pub op: Op,
    /// What the client observed.
    pub outcome: Outcome,
    /// Invocation timestamp, in nanoseconds.
    pub call: u64,
    /// Response timestamp, in nanoseconds; ignored when `outcome` is
    /// [`Outcome::Unknown`]. Must not be smaller than `call` otherwise.
    pub ret: u64,
}

/// The answer of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's sub-history has a linearization.
    Linearizable,
    /// Some key's sub-history has no linearization (or an event is malformed,
    /// e.g. a `Put` with a `GetOk` outcome or a response before its call).
    NotLinearizable {
        /// The offending key.
        key: String,
        /// A short explanation naming the operations that could not be ordered.
        detail: String,
    },
    /// The time budget ran out before every key was decided (no key was found
    /// to be non-linearizable in the time available).
    Timeout,
}

/// Decides whether `history` is linearizable with respect to a per-key register
/// model (see the module documentation), spending at most about `budget` of
/// wall-clock time.
///
/// Keys are checked independently, smallest sub-history first; the first key
/// found non-linearizable is reported even if another key ran out of time. A
/// history whose every key has no known operation is trivially linearizable;
/// otherwise a zero budget yields [`Verdict::Timeout`].
pub fn check(history: &[Event], budget: Duration) -> Verdict {
    let deadline = Instant::now().checked_add(budget);
    for (i, e) in history.iter().enumerate() {
        if let Err(why) = validate(e) {
            return Verdict::NotLinearizable {
                key: e.key.clone(),
                detail: format!("malformed event {}: {why}", describe(i, e)),
            };
        }
    }
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in history.iter().enumerate() {
        if matches!(e.op, Op::Get) && e.outcome == Outcome::Unknown {
            continue; // a read nobody saw constrains nothing
        }
        by_key.entry(e.key.as_str()).or_default().push(i);
    }
    let mut parts: Vec<(&str, Vec<usize>)> = by_key.into_iter().collect();
    parts.sort_by_key(|(key, ops)| (ops.len(), *key));
    let mut timed_out = false;
    for (key, ops) in parts {
        match check_key(history, &ops, deadline) {
            KeyResult::Ok => {}
            KeyResult::Timeout => timed_out = true,
            KeyResult::Fail(detail) => {
                return Verdict::NotLinearizable {
                    key: key.to_owned(),
                    detail,
                };
            }
        }
    }
    if timed_out {
        Verdict::Timeout
    } else {
        Verdict::Linearizable
    }
}

fn validate(e: &Event) -> Result<(), String> {
    let fits = matches!(
        (&e.op, &e.outcome),
        (_, Outcome::Unknown)
            | (Op::Put { .. }, Outcome::PutOk)
            | (Op::Get, Outcome::GetOk(_))
            | (Op::Cas { .. }, Outcome::CasOk(_))
    );
    if !fits {
        return Err("the outcome does not fit the operation".to_owned());
    }
    if e.outcome != Outcome::Unknown && e.ret < e.call {
        return Err("it returned before it was called".to_owned());
    }
    Ok(())
}

/// `#index cCLIENT OP -> OUTCOME [call..ret]`, e.g. `#7 c2 get -> "a" [100..250]`.
fn describe(index: usize, e: &Event) -> String {
    let op = match &e.op {
        Op::Put { value } => format!("put {value:?}"),
        Op::Get => "get".to_owned(),
        Op::Cas {
            expect: Some(x),
            new,
        } => format!("cas {x:?}->{new:?}"),
        Op::Cas { expect: None, new } => format!("cas absent->{new:?}"),
    };
    let (outcome, ret) = match &e.outcome {
        Outcome::PutOk => ("ok".to_owned(), e.ret.to_string()),
        Outcome::GetOk(Some(v)) => (format!("{v:?}"), e.ret.to_string()),
        Outcome::GetOk(None) => ("absent".to_owned(), e.ret.to_string()),
        Outcome::CasOk(b) => (b.to_string(), e.ret.to_string()),
        Outcome::Unknown => ("unknown".to_owned(), "?".to_owned()),
    };
    format!(
        "#{index} c{} {op} -> {outcome} [{}..{ret}]",
        e.client, e.call
    )
}

/// Model state of one key: 0 = absent, `n > 0` = interned value `n - 1`.
type State = u32;

const ABSENT: State = 0;
const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// An operation of one key's sub-history, with values interned.
#[derive(Clone, Copy)]
enum Kind {
    Put(State),
    Get(State),
    Cas {
        expect: State,
        new: State,
        swapped: Option<bool>,
    },
}

impl Kind {
    /// The state after applying this operation to `s`, or `None` if the
    /// recorded outcome is impossible in state `s`. Unknown outcomes never fail.
    fn step(self, s: State) -> Option<State> {
        match self {
            Kind::Put(v) => Some(v),
            Kind::Get(v) => (s == v).then_some(s),
            Kind::Cas {
                expect,
                new,
                swapped: Some(true),
            } => (s == expect).then_some(new),
            Kind::Cas {
                expect,
                swapped: Some(false),
                ..
            } => (s != expect).then_some(s),
            Kind::Cas {
                expect,
                new,
                swapped: None,
            } => Some(if s == expect { new } else { s }),
        }
    }

    fn is_put(self) -> bool {
        matches!(self, Kind::Put(_))
    }
}

enum KeyResult {
    Ok,
    Timeout,
    Fail(String),
}

/// Dead end of the search with the most acknowledged operations ordered (and,
/// among those, the fewest unknown ones), kept for the diagnostic.
struct DeadEnd {
    depth: usize,
    known_done: usize,
    state: State,
    /// The operation whose return was reached before it could be linearized.
    blocked: usize,
    /// Other operations that were candidates at that point.
    pending: Vec<usize>,
    /// The last few operations of the partial linearization, oldest first.
    recent: Vec<usize>,
}

/// Interns values: id 0 is "absent", value `v` gets id `index + 1`.
struct Values<'a> {
    ids: HashMap<&'a str, State>,
    names: Vec<&'a str>,
}

impl<'a> Values<'a> {
    fn id(&mut self, v: &'a str) -> State {
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        self.names.push(v);
        let id = self.names.len() as State;
        self.ids.insert(v, id);
        id
    }

    fn opt(&mut self, v: Option<&'a str>) -> State {
        v.map_or(ABSENT, |v| self.id(v))
    }

    fn show(&self, s: State) -> String {
        if s == ABSENT {
            "absent".to_owned()
        } else {
            format!("{:?}", self.names[s as usize - 1])
        }
    }
}

fn check_key(history: &[Event], events: &[usize], deadline: Option<Instant>) -> KeyResult {
    let n = events.len();
    let mut values = Values {
        ids: HashMap::new(),
        names: Vec::new(),
    };
    let mut kinds = Vec::with_capacity(n);
    let mut known = Vec::with_capacity(n);
    for &i in events {
        let e = &history[i];
        let kind = match (&e.op, &e.outcome) {
            (Op::Put { value }, _) => Kind::Put(values.id(value)),
            (Op::Get, Outcome::GetOk(v)) => Kind::Get(values.opt(v.as_deref())),
            (Op::Get, _) => unreachable!("unknown gets are dropped, others validated"),
            (Op::Cas { expect, new }, outcome) => Kind::Cas {
                expect: values.opt(expect.as_deref()),
                new: values.id(new),
                swapped: match outcome {
                    Outcome::CasOk(b) => Some(*b),
                    _ => None,
                },
            },
        };
        kinds.push(kind);
        known.push(e.outcome != Outcome::Unknown);
    }
    let total_known = known.iter().filter(|&&k| k).count();
    let mut known_left = total_known;
    if known_left == 0 {
        return KeyResult::Ok;
    }

    // Doubly linked list of entries: node 0 is the head sentinel, operation j
    // has its call at node 2j+1 and its return at node 2j+2.
    let mut order: Vec<(bool, u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (j, &i) in events.iter().enumerate() {
        let e = &history[i];
        order.push((false, e.call, false, 2 * j + 1));
        if known[j] {
            order.push((false, e.ret, true, 2 * j + 2));
        } else {
            order.push((true, 0, true, 2 * j + 2));
        }
    }
    // (infinite?, time, is-return?, node): calls sort before returns at equal times.
    order.sort_unstable();
    let mut next = vec![NIL; 2 * n + 1];
    let mut prev = vec![NIL; 2 * n + 1];
    let mut last = HEAD;
    for &(_, _, _, node) in &order {
        next[last] = node;
        prev[node] = last;
        last = node;
    }
    let is_call = |node: usize| node % 2 == 1;
    let op_of = |node: usize| (node - 1) / 2;

    // Linearized set: one bitmask over the known operations, one over the
    // unknown ones (`slot[j]` is operation j's bit within its own mask).
    let mut slot = vec![0usize; n];
    let (mut n_known, mut n_unknown) = (0, 0);
    for j in 0..n {
        let counter = if known[j] {
            &mut n_known
        } else {
            &mut n_unknown
        };
        slot[j] = *counter;
        *counter += 1;
    }
    let mut known_bits = vec![0u64; n_known.div_ceil(64)];
    let mut unknown_bits = vec![0u64; n_unknown.div_ceil(64)];
    let flip = |known_bits: &mut [u64], unknown_bits: &mut [u64], j: usize| {
        let bits = if known[j] { known_bits } else { unknown_bits };
        bits[slot[j] / 64] ^= 1 << (slot[j] % 64);
    };
    // Every configuration ever entered: known bits ++ unknown bits ++ [state, flag].
    let mut cache: HashSet<Vec<u64>> = HashSet::new();
    // Configurations (K ∪ A, x, flag = false) fully explored without success,
    // keyed by K ++ [x], listing each A. Since an unknown operation can always
    // be moved to the end, (K ∪ A', x, any flag) with A' ⊇ A fails as well.
    let mut failed: HashMap<Vec<u64>, Vec<Vec<u64>>> = HashMap::new();
    let mut scratch: Vec<u64> = Vec::new();
    // (call node, state before, "previous was unknown" flag before)
    let mut stack: Vec<(usize, State, bool)> = Vec::new();
    let mut state = ABSENT;
    let mut after_unknown = false;
    // Candidates are tried in two sweeps of the list: known operations first,
    // then unknown ones, so that a configuration is usually explored before
    // its supersets in unknown operations, which `failed` then prunes.
    let mut unknown_sweep = false;
    let mut entry = next[HEAD];
    let mut best: Option<DeadEnd> = None;
    let mut iterations: u64 = 0;

    loop {
        if iterations.is_multiple_of(1024) && deadline.is_some_and(|d| Instant::now() >= d) {
            return KeyResult::Timeout;
        }
        iterations += 1;

        if entry != NIL && is_call(entry) {
            let j = op_of(entry);
            if known[j] == unknown_sweep {
                entry = next[entry];
                continue;
            }
            let kind = kinds[j];
            let allowed = match kind.step(state) {
                None => None,
                // Normal form (module doc, point 4).
                Some(s) if !known[j] && (s == state || (after_unknown && kind.is_put())) => None,
                Some(_) if known[j] && after_unknown && kind.is_put() => None,
                Some(s) => Some(s),
            };
            if let Some(new_state) = allowed {
                flip(&mut known_bits, &mut unknown_bits, j);
                let dominated = n_unknown > 0 && {
                    scratch.clear();
                    scratch.extend_from_slice(&known_bits);
                    scratch.push(u64::from(new_state));
                    failed.get(scratch.as_slice()).is_some_and(|sets| {
                        sets.iter()
                            .any(|a| a.iter().zip(&unknown_bits).all(|(a, b)| a & !b == 0))
                    })
                };
                let mut key = Vec::with_capacity(known_bits.len() + unknown_bits.len() + 1);
                key.extend_from_slice(&known_bits);
                key.extend_from_slice(&unknown_bits);
                key.push(u64::from(new_state) | u64::from(!known[j]) << 32);
                if !dominated && cache.insert(key) {
                    stack.push((entry, state, after_unknown));
                    state = new_state;
                    after_unknown = !known[j];
                    lift(&mut next, &mut prev, entry);
                    if known[j] {
                        known_left -= 1;
                        if known_left == 0 {
                            return KeyResult::Ok;
                        }
                    }
                    unknown_sweep = false;
                    entry = next[HEAD];
                    continue;
                }
                flip(&mut known_bits, &mut unknown_bits, j);
            }
            entry = next[entry];
        } else if !unknown_sweep && n_unknown > 0 {
            unknown_sweep = true;
            entry = next[HEAD];
        } else {
            // A return entry (or, defensively, the end of the list): the
            // operation returned without being linearized on this path.
            let known_done = total_known - known_left;
            let better = best.as_ref().is_none_or(|b| {
                (known_done, std::cmp::Reverse(stack.len()))
                    > (b.known_done, std::cmp::Reverse(b.depth))
            });
            if entry != NIL && better {
                let blocked = op_of(entry);
                let mut pending = Vec::new();
                let mut at = next[HEAD];
                while at != NIL && is_call(at) {
                    if op_of(at) != blocked {
                        pending.push(op_of(at));
                    }
                    at = next[at];
                }
                let recent = stack[stack.len().saturating_sub(3)..]
                    .iter()
                    .map(|&(node, _, _)| op_of(node))
                    .collect();
                best = Some(DeadEnd {
                    depth: stack.len(),
                    known_done,
                    state,
                    blocked,
                    pending,
                    recent,
                });
            }
            let Some((node, s, flag)) = stack.pop() else {
                return KeyResult::Fail(explain(history, events, &values, best, total_known));
            };
            if n_unknown > 0 && !after_unknown {
                let mut key = known_bits.clone();
                key.push(u64::from(state));
                failed.entry(key).or_default().push(unknown_bits.clone());
            }
            let j = op_of(node);
            flip(&mut known_bits, &mut unknown_bits, j);
            state = s;
            after_unknown = flag;
            unlift(&mut next, &mut prev, node);
            if known[j] {
                known_left += 1;
            }
            unknown_sweep = !known[j];
            entry = next[node];
        }
    }
}

/// Unlinks a call entry and its return entry (dancing links).
fn lift(next: &mut [usize], prev: &mut [usize], call: usize) {
    for node in [call, call + 1] {
        next[prev[node]] = next[node];
        if next[node] != NIL {
            prev[next[node]] = prev[node];
        }
    }
}

/// Relinks what [`lift`] unlinked, in reverse order.
fn unlift(next: &mut [usize], prev: &mut [usize], call: usize) {
    for node in [call + 1, call] {
        next[prev[node]] = node;
        if next[node] != NIL {
            prev[next[node]] = node;
        }
    }
}

fn explain(
    history: &[Event],
    events: &[usize],
    values: &Values<'_>,
    best: Option<DeadEnd>,
    total_known: usize,
) -> String {
    const MAX_LISTED: usize = 5;
    let Some(b) = best else {
        return "no linearization exists".to_owned();
    };
    let show = |j: usize| describe(events[j], &history[events[j]]);
    let mut s = format!(
        "no linearization: at best {} of {} acknowledged operations could be ordered; ",
        b.known_done, total_known
    );
    if b.recent.is_empty() {
        let _ = write!(s, "from the initial state (absent)");
    } else {
        let recent: Vec<String> = b.recent.iter().map(|&j| show(j)).collect();
        let _ = write!(
            s,
            "after [{}] the value is {}",
            recent.join(", "),
            values.show(b.state)
        );
    }
    let _ = write!(s, "; {} cannot be ordered next", show(b.blocked));
    if !b.pending.is_empty() {
        let listed: Vec<String> = b
            .pending
            .iter()
            .take(MAX_LISTED)
            .map(|&j| show(j))
            .collect();
        let _ = write!(s, " (nor can any of the concurrent [{}]", listed.join(", "));
        if b.pending.len() > MAX_LISTED {
            let _ = write!(s, " and {} more", b.pending.len() - MAX_LISTED);
        }
        s.push_str(" lead to a linearization)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(10);

    fn ev(client: usize, key: &str, op: Op, outcome: Outcome, call: u64, ret: u64) -> Event {
        Event {
            client,
            key: key.to_owned(),
            op,
            outcome,
            call,
            ret,
        }
    }

    fn put(c: usize, k: &str, v: &str, call: u64, ret: u64) -> Event {
        ev(
            c,
            k,
            Op::Put {
                value: v.to_owned(),
            },
            Outcome::PutOk,
            call,
            ret,
        )
    }

    fn put_unknown(c: usize, k: &str, v: &str, call: u64) -> Event {
        ev(
            c,
            k,
            Op::Put {
                value: v.to_owned(),
            },
            Outcome::Unknown,
            call,
            0,
        )
    }

    fn get(c: usize, k: &str, v: Option<&str>, call: u64, ret: u64) -> Event {
        ev(
            c,
            k,
            Op::Get,
            Outcome::GetOk(v.map(str::to_owned)),
            call,
            ret,
        )
    }

    fn cas(
        c: usize,
        k: &str,
        expect: Option<&str>,
        new: &str,
        ok: Option<bool>,
        call: u64,
        ret: u64,
    ) -> Event {
        let op = Op::Cas {
            expect: expect.map(str::to_owned),
            new: new.to_owned(),
        };
        let outcome = ok.map_or(Outcome::Unknown, Outcome::CasOk);
        ev(c, k, op, outcome, call, ret)
    }

    fn assert_ok(h: &[Event]) {
        let v = check(h, BUDGET);
        assert_eq!(v, Verdict::Linearizable, "history: {h:#?}");
    }

    fn assert_bad(h: &[Event], key: &str) -> String {
        match check(h, BUDGET) {
            Verdict::NotLinearizable { key: k, detail } => {
                assert_eq!(k, key, "{detail}");
                assert!(!detail.is_empty());
                detail
            }
            other => panic!("expected NotLinearizable on {key}, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check(&[], Duration::ZERO), Verdict::Linearizable);
    }

    #[test]
    fn sequential_history() {
        let h = vec![
            get(0, "k", None, 0, 10),
            put(0, "k", "a", 20, 30),
            get(1, "k", Some("a"), 40, 50),
            put(1, "k", "b", 60, 70),
            get(0, "k", Some("b"), 80, 90),
            put(2, "k", "c", 100, 110),
            get(2, "k", Some("c"), 120, 130),
        ];
        assert_ok(&h);
    }

    #[test]
    fn sequential_history_with_wrong_read() {
        let h = vec![
            put(0, "k", "a", 0, 10),
            put(0, "k", "b", 20, 30),
            get(1, "k", Some("a"), 40, 50),
        ];
        let detail = assert_bad(&h, "k");
        assert!(detail.contains("#2"), "the stale get is named: {detail}");
    }

    #[test]
    fn read_of_a_never_written_value() {
        assert_bad(&[get(0, "k", Some("ghost"), 0, 10)], "k");
    }

    #[test]
    fn concurrent_writes_either_order() {
        // a and b overlap; later reads may see either, but consistently.
        let base = vec![put(0, "k", "a", 0, 100), put(1, "k", "b", 50, 150)];
        for winner in ["a", "b"] {
            let mut h = base.clone();
            h.push(get(2, "k", Some(winner), 200, 210));
            h.push(get(3, "k", Some(winner), 220, 230));
            assert_ok(&h);
        }
        // A read during the writes can see the loser, and a later read the winner.
        let mut h = base.clone();
        h.push(get(2, "k", Some("a"), 60, 70));
        h.push(get(3, "k", Some("b"), 200, 210));
        assert_ok(&h);
        // Once both writes completed, the value cannot flip back.
        let mut h = base;
        h.push(get(2, "k", Some("b"), 200, 210));
        h.push(get(3, "k", Some("a"), 220, 230));
        assert_bad(&h, "k");
    }

    #[test]
    fn concurrent_reads_during_a_write_may_see_old_or_new() {
        let h = vec![
            put(0, "k", "a", 0, 10),
            put(1, "k", "b", 20, 100),
            get(2, "k", Some("a"), 30, 40),
            get(3, "k", Some("b"), 50, 60),
            get(2, "k", Some("b"), 70, 80),
        ];
        assert_ok(&h);
        // ... but not new then old.
        let h = vec![
            put(0, "k", "a", 0, 10),
            put(1, "k", "b", 20, 100),
            get(2, "k", Some("b"), 30, 40),
            get(3, "k", Some("a"), 50, 60),
        ];
        assert_bad(&h, "k");
    }

    #[test]
    fn stale_read_after_acknowledged_write() {
        let h = vec![
            put(0, "k", "old", 0, 10),
            put(0, "k", "new", 20, 30),
            // Starts strictly after the write was acknowledged.
            get(1, "k", Some("old"), 31, 40),
        ];
        let detail = assert_bad(&h, "k");
        assert!(detail.contains("#2") && detail.contains("c1"), "{detail}");
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The read is called exactly when the write returns: it may precede it.
        let h = vec![
            put(0, "k", "old", 0, 10),
            put(0, "k", "new", 20, 30),
            get(1, "k", Some("old"), 30, 40),
        ];
        assert_ok(&h);
    }

    #[test]
    fn unknown_put_observed_later() {
        let h = vec![
            put(0, "k", "a", 0, 10),
            put_unknown(1, "k", "b", 20),
            get(2, "k", Some("a"), 30, 40),
            get(2, "k", Some("b"), 1_000, 1_010),
            get(0, "k", Some("b"), 2_000, 2_010),
        ];
        assert_ok(&h);
    }

    #[test]
    fn unknown_put_never_observed() {
        let h = vec![
            put(0, "k", "a", 0, 10),
            put_unknown(1, "k", "lost", 20),
            get(2, "k", Some("a"), 30, 40),
            get(2, "k", Some("a"), 1_000, 1_010),
            put(0, "k", "c", 2_000, 2_010),
            get(0, "k", Some("c"), 3_000, 3_010),
        ];
        assert_ok(&h);
    }

    #[test]
    fn unknown_put_cannot_take_effect_before_its_call() {
        let h = vec![get(0, "k", Some("b"), 0, 10), put_unknown(1, "k", "b", 20)];
        assert_bad(&h, "k");
    }

    #[test]
    fn unknown_put_takes_effect_at_most_once() {
        let h = vec![
            put(0, "k", "a", 0, 10),
            put_unknown(1, "k", "b", 20),
            get(2, "k", Some("b"), 30, 40),
            get(2, "k", Some("a"), 50, 60),
            get(2, "k", Some("b"), 70, 80),
        ];
        assert_bad(&h, "k");
    }

    #[test]
    fn unknown_put_after_overwrite() {
        // The unknown put lands after the acknowledged put c: reads see c, then b.
        let h = vec![
            put_unknown(1, "k", "b", 0),
            put(0, "k", "c", 10, 20),
            get(2, "k", Some("c"), 30, 40),
            get(2, "k", Some("b"), 50, 60),
        ];
        assert_ok(&h);
    }

    #[test]
    fn unknown_get_is_ignored() {
        let h = vec![
            put(0, "k", "a", 0, 10),
            ev(1, "k", Op::Get, Outcome::Unknown, 20, 0),
            get(1, "k", Some("a"), 30, 40),
        ];
        assert_ok(&h);
        assert_eq!(check(&h[1..2], Duration::ZERO), Verdict::Linearizable);
    }

    #[test]
    fn cas_chain() {
        let h = vec![
            cas(0, "k", None, "1", Some(true), 0, 10),
            cas(1, "k", None, "x", Some(false), 20, 30),
            cas(0, "k", Some("1"), "2", Some(true), 40, 50),
            cas(1, "k", Some("1"), "y", Some(false), 60, 70),
            cas(2, "k", Some("2"), "3", Some(true), 80, 90),
            get(1, "k", Some("3"), 100, 110),
        ];
        assert_ok(&h);
    }

    #[test]
    fn concurrent_cas_only_one_can_win() {
        let start = put(0, "k", "0", 0, 10);
        // Both succeed from the same expected value: impossible.
        let h = vec![
            start.clone(),
            cas(1, "k", Some("0"), "a", Some(true), 20, 50),
            cas(2, "k", Some("0"), "b", Some(true), 25, 55),
        ];
        assert_bad(&h, "k");
        // One wins, the other fails: fine in either order of the records.
        let h = vec![
            start,
            cas(1, "k", Some("0"), "a", Some(false), 20, 50),
            cas(2, "k", Some("0"), "b", Some(true), 25, 55),
            get(0, "k", Some("b"), 60, 70),
        ];
        assert_ok(&h);
    }

    #[test]
    fn failed_cas_needs_a_different_value() {
        // A failing cas on "0" while the key certainly holds "0".
        let h = vec![
            put(0, "k", "0", 0, 10),
            cas(1, "k", Some("0"), "a", Some(false), 20, 30),
        ];
        assert_bad(&h, "k");
        // Absent key: cas expecting absence must succeed.
        assert_bad(&[cas(0, "k", None, "a", Some(false), 0, 10)], "k");
    }

    #[test]
    fn unknown_cas_both_ways() {
        let base = vec![
            put(0, "k", "0", 0, 10),
            cas(1, "k", Some("0"), "1", None, 20, 0),
        ];
        let mut took = base.clone();
        took.push(get(2, "k", Some("1"), 100, 110));
        assert_ok(&took);
        let mut not_taken = base.clone();
        not_taken.push(get(2, "k", Some("0"), 100, 110));
        not_taken.push(get(2, "k", Some("1"), 200, 210));
        assert_ok(&not_taken);
        // An unknown cas that would not match cannot produce its value.
        let h = vec![
            put(0, "k", "0", 0, 10),
            cas(1, "k", Some("zzz"), "1", None, 20, 0),
            get(2, "k", Some("1"), 100, 110),
        ];
        assert_bad(&h, "k");
        // An unknown cas chain explains a failed known cas.
        let h = vec![
            put(0, "k", "0", 0, 10),
            cas(1, "k", Some("0"), "1", None, 20, 0),
            cas(3, "k", Some("1"), "2", None, 25, 0),
            cas(2, "k", Some("0"), "x", Some(false), 100, 110),
            get(2, "k", Some("2"), 200, 210),
        ];
        assert_ok(&h);
    }

    #[test]
    fn independent_keys() {
        // Interleaved in time, but each key is fine on its own.
        let h = vec![
            put(0, "a", "1", 0, 100),
            put(1, "b", "1", 10, 20),
            get(2, "b", Some("1"), 30, 40),
            get(1, "a", None, 50, 60),
            put(2, "b", "2", 70, 80),
            get(0, "a", Some("1"), 110, 120),
            get(1, "b", Some("2"), 130, 140),
        ];
        assert_ok(&h);
        // A value written to "a" never shows up under "b".
        let h = vec![
            put(0, "a", "1", 0, 10),
            get(1, "b", Some("1"), 20, 30),
            get(1, "a", Some("1"), 40, 50),
        ];
        assert_bad(&h, "b");
        // A violation on one key is reported against that key only.
        let mut h = vec![put(0, "a", "x", 0, 10), put(0, "c", "y", 0, 10)];
        h.push(put(1, "b", "1", 20, 30));
        h.push(put(1, "b", "2", 40, 50));
        h.push(get(2, "b", Some("1"), 60, 70));
        h.push(get(2, "a", Some("x"), 60, 70));
        assert_bad(&h, "b");
    }

    #[test]
    fn malformed_events_are_rejected() {
        let h = vec![ev(
            0,
            "k",
            Op::Put { value: "a".into() },
            Outcome::GetOk(None),
            0,
            10,
        )];
        let d = assert_bad(&h, "k");
        assert!(d.contains("malformed"), "{d}");
        let d = assert_bad(&[put(0, "k", "a", 10, 5)], "k");
        assert!(d.contains("malformed"), "{d}");
    }

    #[test]
    fn zero_budget_times_out() {
        let h = vec![put(0, "k", "a", 0, 10), get(0, "k", Some("a"), 20, 30)];
        assert_eq!(check(&h, Duration::ZERO), Verdict::Timeout);
    }

    #[test]
    fn memoisation_prunes_interchangeable_orders() {
        // 16 concurrent identical writes then an impossible read: 16! orders,
        // but only 2^16 (set, state) pairs.
        let mut h: Vec<Event> = (0..16)
            .map(|c| put(c, "k", "same", c as u64, 1_000))
            .collect();
        h.push(get(99, "k", Some("other"), 2_000, 2_010));
        let started = Instant::now();
        assert_bad(&h, "k");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn many_unknown_writes_do_not_explode() {
        // 40 timed-out writes that never took effect, concurrent with everything.
        let mut h = vec![put(0, "k", "a", 0, 10)];
        for i in 0..40u64 {
            h.push(put_unknown(
                1 + i as usize,
                "k",
                &format!("lost{i}"),
                20 + i,
            ));
        }
        let mut t = 100;
        for i in 0..200u64 {
            let v = format!("v{i}");
            h.push(put(0, "k", &v, t, t + 10));
            h.push(get(0, "k", Some(&v), t + 20, t + 30));
            t += 40;
        }
        let started = Instant::now();
        assert_ok(&h);
        // ... and a violation among them is still found quickly.
        h.push(get(0, "k", Some("v3"), t + 100, t + 110));
        assert_bad(&h, "k");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    /// xorshift64*: deterministic randomness without crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Runs `n_ops` operations sequentially against a real map, each at its own
    /// linearization point, then gives each an invocation/response interval
    /// around that point (respecting that a client has one operation in flight),
    /// so the result is linearizable by construction but heavily overlapping.
    /// About 3% of writes become `Unknown` (half of them did take effect).
    fn generate(seed: u64, n_ops: usize, n_keys: usize, n_clients: usize) -> Vec<Event> {
        let mut rng = Rng(seed);
        let mut store: HashMap<String, String> = HashMap::new();
        let mut busy_until = vec![0u64; n_clients];
        let mut history = Vec::with_capacity(n_ops);
        let mut t = 1_000u64;
        for i in 0..n_ops {
            t += 1 + rng.below(20);
            let idle: Vec<usize> = (0..n_clients).filter(|&c| busy_until[c] < t).collect();
            if idle.is_empty() {
                t = busy_until.iter().min().unwrap() + 1;
            }
            let idle: Vec<usize> = (0..n_clients).filter(|&c| busy_until[c] < t).collect();
            let client = idle[rng.below(idle.len() as u64) as usize];
            let earliest = busy_until[client] + 1;
            let call = t - rng.below((t - earliest).min(150) + 1);
            let ret = t + rng.below(150);
            busy_until[client] = ret;
            let key = format!("key{}", rng.below(n_keys as u64));
            let current = store.get(&key).cloned();
            let unknown = rng.below(100) < 3;
            let applies = !unknown || rng.below(2) == 0;
            let new = format!("v{i}");
            let (op, outcome) = match rng.below(10) {
                0..=3 => {
                    if applies {
                        store.insert(key.clone(), new.clone());
                    }
                    (Op::Put { value: new }, Outcome::PutOk)
                }
                4..=7 => (Op::Get, Outcome::GetOk(current)),
                _ => {
                    let expect = match rng.below(4) {
                        0 | 1 => current.clone(),
                        2 => None,
                        _ => Some(format!("v{}", rng.below(i as u64 + 1))),
                    };
                    let swapped = expect == current;
                    if swapped && applies {
                        store.insert(key.clone(), new.clone());
                    }
                    (Op::Cas { expect, new }, Outcome::CasOk(swapped))
                }
            };
            let outcome = if unknown { Outcome::Unknown } else { outcome };
            history.push(Event {
                client,
                key,
                op,
                outcome,
                call,
                ret,
            });
        }
        history
    }

    #[test]
    fn generated_histories_are_linearizable_quickly() {
        let started = Instant::now();
        let h = generate(0x5EED_1234_ABCD_0001, 2_000, 20, 8);
        assert_eq!(h.len(), 2_000);
        let clients: HashSet<usize> = h.iter().map(|e| e.client).collect();
        assert_eq!(clients.len(), 8);
        let overlapping = h.windows(2).filter(|w| w[1].call <= w[0].ret).count();
        assert!(
            overlapping > 1_000,
            "only {overlapping} overlapping neighbours"
        );
        assert_eq!(check(&h, BUDGET), Verdict::Linearizable);
        let took = started.elapsed();
        assert!(took < BUDGET, "took {took:?}");
        // A few more seeds, for good measure.
        for seed in 1..=5u64 {
            let h = generate(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 2_000, 20, 8);
            assert_eq!(check(&h, BUDGET), Verdict::Linearizable, "seed {seed}");
        }
        assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
    }

    #[test]
    fn generated_single_key_contention_is_linearizable() {
        let started = Instant::now();
        let h = generate(42, 1_000, 1, 8);
        assert_eq!(check(&h, BUDGET), Verdict::Linearizable);
        assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
    }

    #[test]
    fn corrupted_generated_history_is_caught() {
        let mut h = generate(7, 2_000, 20, 8);
        let victim = h
            .iter()
            .rposition(|e| matches!(e.outcome, Outcome::GetOk(Some(_))))
            .expect("some read saw a value");
        h[victim].outcome = Outcome::GetOk(Some("never-written".to_owned()));
        let key = h[victim].key.clone();
        let detail = assert_bad(&h, &key);
        assert!(detail.contains(&format!("#{victim} ")), "{detail}");
    }
}
