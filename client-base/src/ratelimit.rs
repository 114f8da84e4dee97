//! Client-side rate limiting, as client-go's `flowcontrol.NewTokenBucketRateLimiter`
//! behind `rest.Config.QPS` and `Burst`: a bucket of `burst` tokens refilled at `qps`
//! per second; every request takes one, waiting for it when the bucket is empty.
//!
//! [`RateLimitLayer`] puts the bucket in front of a kube-rs client's service stack.
//! kube-rs drives its stack through one `tower::buffer` worker, so requests wait in
//! order (FIFO) in `poll_ready`, as client-go's callers do in `Wait`. Watches take a
//! token when they are opened, as in client-go, and none while they stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// A token bucket: `burst` tokens, refilled at `qps` per second. Tokens are
/// reserved ahead (the count may go negative), so each waiter knows at once how
/// long it waits and waiters are served in order, as `golang.org/x/time/rate`.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(qps: f32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            qps: f64::from(qps),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token; returns how long to wait before using it (zero when one is
    /// available now).
    pub fn reserve(&self) -> Duration {
        let mut s = self.state.lock();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.qps).min(self.burst);
        s.1 = now;
        s.0 -= 1.0;
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.0 / self.qps)
        }
    }
}

impl TokenBucket {
    /// Gives back a token taken by [`TokenBucket::reserve`] and not used (a caller
    /// that drops rather than waits).
    pub fn refund(&self) {
        let mut s = self.state.lock();
        s.0 = (s.0 + 1.0).min(self.burst);
    }

    /// Whether the bucket is full (nothing taken recently).
    pub fn is_full(&self) -> bool {
        let s = self.state.lock();
        let elapsed = Instant::now().saturating_duration_since(s.1).as_secs_f64();
        s.0 + elapsed * self.qps >= self.burst
    }
}

/// Limits a service to a [`TokenBucket`]'s rate.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<TokenBucket>,
}

impl RateLimitLayer {
    /// `qps` requests per second with bursts of `burst`.
    pub fn new(qps: f32, burst: u32) -> Self {
        RateLimitLayer {
            bucket: Arc::new(TokenBucket::new(qps, burst)),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
            reserved: false,
            sleep: None,
        }
    }
}

/// The service [`RateLimitLayer`] makes.
pub struct RateLimited<S> {
    inner: S,
    bucket: Arc<TokenBucket>,
    /// Whether a token is held for the next call.
    reserved: bool,
    /// The wait for that token, when it was not available at once.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S: Service<R>, R> Service<R> for RateLimited<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if !self.reserved {
            self.reserved = true;
            let wait = self.bucket.reserve();
            if !wait.is_zero() {
                self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
            }
        }
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.reserved = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_qps() {
        let b = TokenBucket::new(10.0, 3);
        for _ in 0..3 {
            assert_eq!(b.reserve(), Duration::ZERO, "the burst is free");
        }
        assert_eq!(b.reserve(), Duration::from_millis(100));
        assert_eq!(b.reserve(), Duration::from_millis(200), "waiters queue up");
        tokio::time::advance(Duration::from_secs(10)).await;
        // Refilled to the burst, not beyond.
        for _ in 0..3 {
            assert_eq!(b.reserve(), Duration::ZERO);
        }
        assert!(!b.reserve().is_zero());
    }

    #[tokio::test(start_paused = true)]
    async fn the_layer_spaces_calls_at_the_rate() {
        use tower::ServiceExt;
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        let svc = tower::service_fn(move |_: ()| {
            c.lock().push(Instant::now());
            async { Ok::<_, std::convert::Infallible>(()) }
        });
        let mut svc = RateLimitLayer::new(5.0, 1).layer(svc);
        let start = Instant::now();
        for _ in 0..4 {
            svc.ready().await.unwrap().call(()).await.unwrap();
        }
        let at: Vec<u128> = calls
            .lock()
            .iter()
            .map(|t| t.duration_since(start).as_millis())
            .collect();
        assert_eq!(at, [0, 200, 400, 600]);
    }
}
