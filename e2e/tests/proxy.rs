//! `pods/proxy` and `services/proxy` through real kubectl to an HTTP server inside a
//! network namespace this test creates (upstream refuses to proxy to loopback, so
//! the pod needs a real address). Skipped when network namespaces are unavailable.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{ApiServer, have_kubectl};

/// A network namespace with a veth pair: the host side `10.251.<n>.1`, the pod side
/// `10.251.<n>.2`, and an HTTP server on the pod side. Torn down on drop.
struct PodNet {
    ns: String,
    host_if: String,
    pod_ip: String,
    server: Option<Child>,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl PodNet {
    fn start(dir: &std::path::Path) -> Option<PodNet> {
        let n = std::process::id() % 200 + 20;
        let ns = format!("keelson-proxy-{n}");
        let host_if = format!("kpx{n}h");
        let pod_if = format!("kpx{n}p");
        let host_ip = format!("10.251.{n}.1");
        let pod_ip = format!("10.251.{n}.2");
        let _ = ip(&["netns", "del", &ns]);
        let _ = ip(&["link", "del", &host_if]);
        if !ip(&["netns", "add", &ns]) {
            return None;
        }
        let net = PodNet {
            ns: ns.clone(),
            host_if: host_if.clone(),
            pod_ip: pod_ip.clone(),
            server: None,
        };
        let ok = ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &pod_if,
        ]) && ip(&["link", "set", &pod_if, "netns", &ns])
            && ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if])
            && ip(&["link", "set", &host_if, "up"])
            && ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{pod_ip}/24"),
                "dev",
                &pod_if,
            ])
            && ip(&["-n", &ns, "link", "set", &pod_if, "up"])
            && ip(&["-n", &ns, "link", "set", "lo", "up"]);
        if !ok {
            return None;
        }
        std::fs::write(dir.join("hello.txt"), "hello from the pod\n").ok()?;
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                &pod_ip,
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut net = net;
        net.server = Some(server);
        // Wait for the server to listen.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect_timeout(
            &format!("{pod_ip}:8080").parse().ok()?,
            Duration::from_millis(200),
        )
        .is_err()
        {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(net)
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

#[test]
fn pods_and_services_proxy_to_the_pod() {
    if !have_kubectl() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("keelson-proxy-www-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(net) = PodNet::start(&dir) else {
        eprintln!(
            "skipping: cannot create a network namespace with an HTTP server (needs root, iproute2, python3)"
        );
        return;
    };
    let s = ApiServer::start();
    let bin = "kubectl.1.33";
    let n = "proxy";
    s.ok(bin, &["create", "namespace", n]);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: {n}, labels: {{app: web}}}}\nspec:\n  containers:\n  - name: web\n    image: busybox\n    ports: [{{containerPort: 8080}}]\n"
    );
    s.ok_stdin(bin, &["create", "-f", "-"], Some(&pod));
    let status = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#,
        ip = net.pod_ip
    );
    s.ok(
        bin,
        &[
            "patch",
            "pod",
            "web",
            "-n",
            n,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ],
    );

    // pods/proxy: the first container port, or the one named.
    for path in ["web", "web:8080", "http:web:8080"] {
        let got = s.ok(
            bin,
            &[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/{n}/pods/{path}/proxy/hello.txt"),
            ],
        );
        assert_eq!(got, "hello from the pod\n", "{path}");
    }
    let listing = s.ok(
        bin,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{n}/pods/web/proxy/"),
        ],
    );
    assert!(listing.contains("hello.txt"), "{listing}");
    let err = s.fails(
        bin,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{n}/pods/web/proxy/missing"),
        ],
        None,
    );
    assert!(err.contains("404") || err.contains("NotFound"), "{err}");

    // services/proxy: by port number or name, through the endpoints' pod.
    let svc = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {n}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    );
    s.ok_stdin(bin, &["create", "-f", "-"], Some(&svc));
    let err = s.fails(
        bin,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{n}/services/web:80/proxy/hello.txt"),
        ],
        None,
    );
    assert!(
        err.contains("ServiceUnavailable") || err.contains("503"),
        "{err}"
    );
    let eps = format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: web, namespace: {n}}}\nsubsets:\n- addresses: [{{ip: {ip}, targetRef: {{kind: Pod, namespace: {n}, name: web}}}}]\n  ports: [{{name: http, port: 8080}}]\n",
        ip = net.pod_ip
    );
    s.ok_stdin(bin, &["apply", "-f", "-"], Some(&eps));
    for path in ["web:80", "web:http", "http:web:http"] {
        let got = s.ok(
            bin,
            &[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/{n}/services/{path}/proxy/hello.txt"),
            ],
        );
        assert_eq!(got, "hello from the pod\n", "{path}");
    }
    let err = s.fails(
        bin,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{n}/services/web:81/proxy/"),
        ],
        None,
    );
    assert!(
        err.contains(r#"no service port 81 found for service \"web\""#)
            || err.contains("no service port 81"),
        "{err}"
    );

    // Loopback is never proxied to.
    let lo = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: lo, namespace: {n}}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n"
    );
    s.ok_stdin(bin, &["create", "-f", "-"], Some(&lo));
    s.ok(
        bin,
        &[
            "patch",
            "pod",
            "lo",
            "-n",
            n,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"podIP":"127.0.0.1"}}"#,
        ],
    );
    let err = s.fails(
        bin,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{n}/pods/lo:8080/proxy/"),
        ],
        None,
    );
    assert!(err.contains("address not allowed"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
