//! The Watch service: one bidirectional stream carrying many watches.
//!
//! Each stream has a task that owns its watches. A watch starting in the past catches
//! up from stored history and then joins the hub (see [`crate::watch`]); a watch whose
//! start revision is compacted is cancelled with `compact_revision`, as etcd does.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use prost::Message;
use proto::etcdserverpb::watch_create_request::FilterType;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::watch_server::Watch;
use proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use proto::mvccpb::Event;
use proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::Core;
use crate::mvcc::KeyRange;
use crate::watch::{Filter, HubMsg};

/// The Watch service.
pub struct WatchService(pub Arc<Core>);

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

struct WatchState {
    id: i64,
    filter: Filter,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    /// The last revision delivered (or known to have nothing for us).
    seen: i64,
    /// Whether anything was sent since the last progress tick.
    sent_since_tick: bool,
    /// Whether the hub delivers to it directly (it has seen all published history).
    synced: bool,
}

struct StreamTask {
    core: Arc<Core>,
    out: Out,
    hub_tx: mpsc::UnboundedSender<HubMsg>,
    /// hub-wide watcher ID -> watch.
    watches: HashMap<u64, WatchState>,
    /// stream-local watch ID -> hub-wide ID.
    ids: HashMap<i64, u64>,
    next_watch_id: i64,
}

/// The watch ID etcd uses for responses not tied to one watch.
const INVALID_WATCH_ID: i64 = -1;

impl StreamTask {
    async fn send(&self, r: WatchResponse) -> bool {
        self.out.send(Ok(r)).await.is_ok()
    }

    async fn create(&mut self, c: WatchCreateRequest) -> bool {
        let published = self.core.hub.published_rev();
        let id = if c.watch_id != 0 {
            if self.ids.contains_key(&c.watch_id) {
                // etcd answers a duplicate ID with a created-and-cancelled response.
                return self
                    .send(WatchResponse {
                        header: Some(self.core.header(published)),
                        watch_id: INVALID_WATCH_ID,
                        created: true,
                        canceled: true,
                        cancel_reason: "etcdserver: duplicate watch ID".into(),
                        ..Default::default()
                    })
                    .await;
            }
            c.watch_id
        } else {
            while self.ids.contains_key(&self.next_watch_id) {
                self.next_watch_id += 1;
            }
            let id = self.next_watch_id;
            self.next_watch_id += 1;
            id
        };
        let filter = Filter {
            range: KeyRange::from_etcd(&c.key, &c.range_end),
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        };
        let start = if c.start_revision > 0 {
            c.start_revision
        } else {
            published + 1
        };
        let hub_id = self.core.hub.next_id();
        self.ids.insert(id, hub_id);
        self.watches.insert(
            hub_id,
            WatchState {
                id,
                filter,
                prev_kv: c.prev_kv,
                progress_notify: c.progress_notify,
                fragment: c.fragment,
                seen: start - 1,
                sent_since_tick: false,
                synced: false,
            },
        );
        if !self
            .send(WatchResponse {
                header: Some(self.core.header(published)),
                watch_id: id,
                created: true,
                ..Default::default()
            })
            .await
        {
            return false;
        }
        self.catch_up(hub_id).await
    }

    /// Delivers stored history after `seen` until the watch can join the hub.
    async fn catch_up(&mut self, hub_id: u64) -> bool {
        loop {
            let Some(w) = self.watches.get(&hub_id) else {
                return true;
            };
            let upto = self.core.hub.published_rev();
            if w.seen < upto {
                let filter = w.filter.clone();
                let from = w.seen + 1;
                let res = self
                    .core
                    .sm
                    .mvcc()
                    .events_between(from, upto, &|k| filter.range.contains(k));
                match res {
                    Ok(events) => {
                        let events: Vec<Event> =
                            events.into_iter().filter(|e| filter.matches(e)).collect();
                        if !events.is_empty() && !self.deliver(hub_id, events, upto).await {
                            return false;
                        }
                        if let Some(w) = self.watches.get_mut(&hub_id) {
                            w.seen = upto;
                        }
                    }
                    Err(e) => {
                        // A compacted start revision is reported as etcd does, with the
                        // compaction revision; anything else with its reason.
                        let id = w.id;
                        self.drop_watch(hub_id);
                        let (compact_revision, cancel_reason) = match e {
                            crate::mvcc::Error::Compacted => {
                                (self.core.sm.mvcc().compact_rev(), String::new())
                            }
                            other => (0, other.to_string()),
                        };
                        return self
                            .send(WatchResponse {
                                header: Some(self.core.header(0)),
                                watch_id: id,
                                compact_revision,
                                canceled: true,
                                cancel_reason,
                                ..Default::default()
                            })
                            .await;
                    }
                }
                continue;
            }
            let Some(w) = self.watches.get(&hub_id) else {
                return true;
            };
            if self
                .core
                .hub
                .try_sync(hub_id, w.seen, w.filter.clone(), self.hub_tx.clone())
                .is_ok()
            {
                if let Some(w) = self.watches.get_mut(&hub_id) {
                    w.synced = true;
                }
                return true;
            }
        }
    }

    fn drop_watch(&mut self, hub_id: u64) {
        self.core.hub.remove(hub_id);
        if let Some(w) = self.watches.remove(&hub_id) {
            self.ids.remove(&w.id);
        }
    }

    /// Sends events for one watch, with prev_kv and fragmenting as it asked.
    async fn deliver(&mut self, hub_id: u64, mut events: Vec<Event>, rev: i64) -> bool {
        let Some(w) = self.watches.get_mut(&hub_id) else {
            return true;
        };
        w.seen = w.seen.max(rev);
        w.sent_since_tick = true;
        let (id, prev_kv, fragment) = (w.id, w.prev_kv, w.fragment);
        if prev_kv {
            for ev in &mut events {
                let Some(kv) = &ev.kv else { continue };
                let is_create = ev.r#type == EventType::Put as i32 && kv.version == 1;
                if !is_create {
                    ev.prev_kv = self
                        .core
                        .sm
                        .mvcc()
                        .get_at(&kv.key, kv.mod_revision - 1)
                        .ok()
                        .flatten();
                }
            }
        }
        let header = self.core.header(rev);
        let max = self.core.limits.max_request_bytes;
        let resp = WatchResponse {
            header: Some(header),
            watch_id: id,
            events,
            ..Default::default()
        };
        if !fragment || resp.encoded_len() <= max || resp.events.len() <= 1 {
            return self.send(resp).await;
        }
        // Split into fragments under the limit; all but the last carry fragment=true.
        let mut parts: Vec<Vec<Event>> = vec![Vec::new()];
        let mut size = 0;
        for ev in resp.events {
            let l = ev.encoded_len() + 8;
            if size + l > max && !parts.last().is_some_and(Vec::is_empty) {
                parts.push(Vec::new());
                size = 0;
            }
            size += l;
            if let Some(p) = parts.last_mut() {
                p.push(ev);
            }
        }
        let n = parts.len();
        for (i, events) in parts.into_iter().enumerate() {
            let r = WatchResponse {
                header: Some(header),
                watch_id: id,
                events,
                fragment: i + 1 < n,
                ..Default::default()
            };
            if !self.send(r).await {
                return false;
            }
        }
        true
    }

    async fn cancel(&mut self, id: i64) -> bool {
        let Some(hub_id) = self.ids.get(&id).copied() else {
            return true;
        };
        self.drop_watch(hub_id);
        self.send(WatchResponse {
            header: Some(self.core.header(0)),
            watch_id: id,
            canceled: true,
            ..Default::default()
        })
        .await
    }

    /// Delivers every hub message already queued. Everything published up to the
    /// revision read before the call is then on its way to the client, so a progress
    /// response at that revision never overtakes an event.
    async fn drain_hub(&mut self, hub_rx: &mut mpsc::UnboundedReceiver<HubMsg>) -> bool {
        while let Ok(msg) = hub_rx.try_recv() {
            if !self.on_hub(msg).await {
                return false;
            }
        }
        true
    }

    async fn on_hub(&mut self, msg: HubMsg) -> bool {
        match msg {
            HubMsg::Events {
                watcher,
                events,
                rev,
            } => self.deliver(watcher, events, rev).await,
            HubMsg::Resync { watcher } => {
                if let Some(w) = self.watches.get_mut(&watcher) {
                    w.synced = false;
                }
                self.catch_up(watcher).await
            }
        }
    }

    async fn progress_tick(&mut self, hub_rx: &mut mpsc::UnboundedReceiver<HubMsg>) -> bool {
        let rev = self.core.hub.published_rev();
        if !self.drain_hub(hub_rx).await {
            return false;
        }
        let due: Vec<i64> = self
            .watches
            .values_mut()
            .filter(|w| w.progress_notify)
            .filter_map(|w| {
                let quiet = !w.sent_since_tick && w.synced;
                w.sent_since_tick = false;
                quiet.then_some(w.id)
            })
            .collect();
        for id in due {
            if !self
                .send(WatchResponse {
                    header: Some(self.core.header(rev)),
                    watch_id: id,
                    ..Default::default()
                })
                .await
            {
                return false;
            }
        }
        true
    }

    async fn run(
        mut self,
        mut inbound: Streaming<WatchRequest>,
        mut hub_rx: mpsc::UnboundedReceiver<HubMsg>,
    ) {
        let mut ticker = tokio::time::interval(self.core.limits.progress_notify_interval);
        ticker.tick().await;
        loop {
            let ok = tokio::select! {
                req = inbound.next() => match req {
                    Some(Ok(r)) => match r.request_union {
                        Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
                        Some(RequestUnion::CancelRequest(c)) => self.cancel(c.watch_id).await,
                        Some(RequestUnion::ProgressRequest(_)) => {
                            let rev = self.core.hub.published_rev();
                            if !self.drain_hub(&mut hub_rx).await {
                                break;
                            }
                            self.send(WatchResponse {
                                header: Some(self.core.header(rev)),
                                watch_id: INVALID_WATCH_ID,
                                ..Default::default()
                            }).await
                        }
                        None => true,
                    },
                    _ => false,
                },
                msg = hub_rx.recv() => match msg {
                    Some(msg) => self.on_hub(msg).await,
                    None => false,
                },
                _ = ticker.tick() => self.progress_tick(&mut hub_rx).await,
            };
            if !ok {
                break;
            }
        }
        for hub_id in self.watches.keys() {
            self.core.hub.remove(*hub_id);
        }
        self.core
            .metrics
            .watchers
            .set(self.core.hub.watchers() as i64);
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let (out, rx) = mpsc::channel(128);
        let (hub_tx, hub_rx) = mpsc::unbounded_channel();
        let task = StreamTask {
            core: self.0.clone(),
            out,
            hub_tx,
            watches: HashMap::new(),
            ids: HashMap::new(),
            next_watch_id: 0,
        };
        tokio::spawn(task.run(req.into_inner(), hub_rx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
