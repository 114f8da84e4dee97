//! Cluster membership: member IDs, the initial cluster, and the members table.
//!
//! IDs are computed as etcd computes them (`membership.computeMemberId`): the first 8
//! bytes, big-endian, of SHA-1 over the sorted peer URLs, the cluster token and, for
//! members added at run time, the time of the add. The cluster ID is SHA-1 over the
//! sorted member IDs.

use std::collections::BTreeMap;

use prost::Message;
use proto::etcdserverpb::Member;
use sha1::{Digest, Sha1};

use crate::engine::{KvEngine, Table, WriteBatch};

/// Errors in membership configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--initial-cluster` could not be parsed.
    #[error("invalid --initial-cluster {0:?}: expected name=url[,name=url...]")]
    BadInitialCluster(String),
    /// This member's name is not in `--initial-cluster`.
    #[error("couldn't find local name {name:?} in the initial cluster configuration")]
    NameNotFound {
        /// The member's `--name`.
        name: String,
    },
    /// This member's advertised peer URLs differ from its `--initial-cluster` entry.
    #[error(
        "--initial-cluster has {name}={listed} but missing from --initial-advertise-peer-urls={advertised} (\"{listed}\"(resolved from {listed}) != \"{advertised}\"(resolved from {advertised}))"
    )]
    UrlMismatch {
        /// The member's name.
        name: String,
        /// URLs listed in `--initial-cluster`.
        listed: String,
        /// URLs given to `--initial-advertise-peer-urls`.
        advertised: String,
    },
    /// The members table is unreadable.
    #[error("members table: {0}")]
    Storage(#[from] crate::engine::Error),
}

/// etcd's member ID.
pub fn member_id(peer_urls: &[String], token: &str, now_unix: Option<i64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b: Vec<u8> = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    if let Some(t) = now_unix {
        b.extend_from_slice(t.to_string().as_bytes());
    }
    let h = Sha1::digest(&b);
    u64::from_be_bytes(h[..8].try_into().expect("sha1 is 20 bytes"))
}

/// etcd's cluster ID over a set of member IDs.
pub fn cluster_id(ids: impl IntoIterator<Item = u64>) -> u64 {
    let mut ids: Vec<u64> = ids.into_iter().collect();
    ids.sort_unstable();
    let mut b = Vec::with_capacity(ids.len() * 8);
    for id in ids {
        b.extend_from_slice(&id.to_be_bytes());
    }
    let h = Sha1::digest(&b);
    u64::from_be_bytes(h[..8].try_into().expect("sha1 is 20 bytes"))
}

/// Parses `--initial-cluster` (`name=url,name=url`) into name -> peer URLs.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| Error::BadInitialCluster(s.to_owned()))?;
        if url::Url::parse(url).is_err() {
            return Err(Error::BadInitialCluster(s.to_owned()));
        }
        out.entry(name.to_owned()).or_default().push(url.to_owned());
    }
    if out.is_empty() {
        return Err(Error::BadInitialCluster(s.to_owned()));
    }
    Ok(out)
}

/// The members of a new cluster, from `--initial-cluster`, with IDs. Checks that
/// `name` is listed with exactly `advertised` peer URLs.
pub fn initial_members(
    initial_cluster: &str,
    token: &str,
    name: &str,
    advertised: &[String],
) -> Result<Vec<Member>, Error> {
    let parsed = parse_initial_cluster(initial_cluster)?;
    let mine = parsed.get(name).ok_or_else(|| Error::NameNotFound {
        name: name.to_owned(),
    })?;
    let (mut a, mut b) = (mine.clone(), advertised.to_vec());
    a.sort();
    b.sort();
    if a != b {
        return Err(Error::UrlMismatch {
            name: name.to_owned(),
            listed: mine.join(","),
            advertised: advertised.join(","),
        });
    }
    Ok(parsed
        .into_iter()
        .map(|(n, urls)| Member {
            id: member_id(&urls, token, None),
            name: n,
            peer_ur_ls: urls,
            client_ur_ls: Vec::new(),
            is_learner: false,
        })
        .collect())
}

/// Reads every member from the members table.
pub fn load(engine: &dyn KvEngine) -> Result<Vec<Member>, Error> {
    let mut out = Vec::new();
    engine.scan(Table::Members, b"", None, &mut |_, v| {
        if let Ok(m) = Member::decode(v) {
            out.push(m);
        }
        true
    })?;
    Ok(out)
}

/// Adds a member's record to a batch.
pub fn put(batch: &mut WriteBatch, m: &Member) {
    batch.put(
        Table::Members,
        m.id.to_be_bytes().to_vec(),
        m.encode_to_vec(),
    );
}

/// Adds a member's removal to a batch.
pub fn delete(batch: &mut WriteBatch, id: u64) {
    batch.delete(Table::Members, id.to_be_bytes().to_vec());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parsing_and_checks() {
        let ic = "a=http://127.0.0.1:2380,b=http://127.0.0.1:2381";
        let ms = initial_members(ic, "tok", "a", &["http://127.0.0.1:2380".into()]).unwrap();
        assert_eq!(ms.len(), 2);
        assert_ne!(ms[0].id, ms[1].id);
        assert_eq!(
            ms[0].id,
            member_id(&["http://127.0.0.1:2380".into()], "tok", None)
        );
        assert_ne!(
            ms[0].id,
            member_id(&["http://127.0.0.1:2380".into()], "other", None),
            "token matters"
        );
        assert!(matches!(
            initial_members(ic, "tok", "c", &[]),
            Err(Error::NameNotFound { .. })
        ));
        assert!(matches!(
            initial_members(ic, "tok", "a", &["http://127.0.0.1:9999".into()]),
            Err(Error::UrlMismatch { .. })
        ));
        assert!(parse_initial_cluster("nonsense").is_err());
        assert_eq!(cluster_id([1, 2]), cluster_id([2, 1]));
    }
}
