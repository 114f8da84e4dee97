//! https client and peer URLs with etcd's TLS flags, certificates made by openssl.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

/// A CA, and a cert+key for 127.0.0.1 usable as server and client (etcd's peer certs
/// are both), named `name.pem`/`name-key.pem`.
fn make_pki(dir: &Path, names: &[&str]) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca-key.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca-key.pem",
            "-subj",
            "/CN=keelson-test-ca",
            "-days",
            "2",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    for n in names {
        let key = format!("{n}-key.pem");
        let csr = format!("{n}.csr");
        let crt = format!("{n}.pem");
        // genpkey writes PKCS#8, which both rustls and Go read.
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={n}"),
                "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                &crt,
            ],
        );
    }
}

#[test]
fn https_clients_and_peers_with_client_cert_auth() {
    let pki = tempfile::tempdir().unwrap();
    let p = pki.path();
    make_pki(p, &["server", "client"]);
    let f = |n: &str| p.join(n).display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let n = 3;
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let ic = ports
        .iter()
        .enumerate()
        .map(|(i, (_, pp))| format!("t{i}=https://127.0.0.1:{pp}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<MemberProc> = ports
        .iter()
        .enumerate()
        .map(|(i, (c, pp))| MemberProc {
            name: format!("t{i}"),
            client_port: *c,
            peer_port: *pp,
            data_dir: dir.path().join(format!("t{i}")),
            child: None,
            log: dir.path().join(format!("t{i}.log")),
            extra: vec![
                "--cert-file".into(),
                f("server.pem"),
                "--key-file".into(),
                f("server-key.pem"),
                "--trusted-ca-file".into(),
                f("ca.pem"),
                "--client-cert-auth".into(),
                "--peer-cert-file".into(),
                f("server.pem"),
                "--peer-key-file".into(),
                f("server-key.pem"),
                "--peer-trusted-ca-file".into(),
                f("ca.pem"),
                "--peer-client-cert-auth".into(),
            ],
            flavor: Flavor::Keelson,
            initial_cluster: ic.clone(),
            state: "new".into(),
            scheme: "https",
            proxy_port: None,
        })
        .collect();
    for m in &mut members {
        m.start();
    }
    let eps: Vec<String> = members
        .iter()
        .map(|m| format!("https://{}", m.endpoint()))
        .collect();
    let tls = [
        format!("--cacert={}", f("ca.pem")),
        format!("--cert={}", f("client.pem")),
        format!("--key={}", f("client-key.pem")),
    ];
    let with_tls = |ep: &str, args: &[&str]| {
        let mut a: Vec<&str> = tls.iter().map(String::as_str).collect();
        a.extend_from_slice(args);
        etcdctl(ep, &a)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for ep in &eps {
        while !with_tls(ep, &["endpoint", "health"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "TLS cluster not healthy:\n{}",
                tail(&members[0].log_text(), 30)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    ok(with_tls(&eps[0], &["put", "secure", "yes"]));
    assert_eq!(
        ok(with_tls(&eps[2], &["get", "secure", "--print-value-only"])),
        "yes\n"
    );
    let list = ok(with_tls(&eps[1], &["member", "list"]));
    assert!(list.contains("https://127.0.0.1"), "{list}");
    // Without a client certificate the server refuses (client-cert-auth).
    let no_cert = etcdctl(
        &eps[0],
        &[
            &format!("--cacert={}", f("ca.pem")),
            "--command-timeout=3s",
            "get",
            "secure",
        ],
    );
    assert!(
        !no_cert.status.success(),
        "a client without a certificate got in: {}",
        text(&no_cert)
    );
    // A client that does not trust our CA refuses the server.
    let untrusted = etcdctl(&eps[0], &["--command-timeout=3s", "get", "secure"]);
    assert!(!untrusted.status.success());
}
