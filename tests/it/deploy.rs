//! Deployment files, proven as far as this machine allows: a full race through real nginx with
//! the repo's `nginx-redis.conf` (only its upstream hosts and listen port mapped to loopback),
//! and the compose file and Dockerfile checked for what an operator relies on. Docker itself
//! cannot run here (no engine), so neither the image nor the compose stack is started.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// nginx with the repo's site config, upstreams mapped to `ports`.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// `ports`: each server's players' and spectators' ports.
    fn start(ports: [(u16, u16); 3]) -> Nginx {
        require("nginx", "nginx");
        let dir = temp_dir("nginx");
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // Workers may run as an unprivileged user: let them write their temp files.
        let _ = Command::new("chmod")
            .args(["-R", "a+rwx"])
            .arg(&dir)
            .status();
        let port = free_port();
        let mut site = repo_file("nginx-redis.conf");
        for (i, (players, spectators)) in ports.iter().enumerate() {
            for (from, to) in [(8080, players), (8081, spectators)] {
                let upstream = format!("server app{}:{from}", i + 1);
                assert!(
                    site.contains(&upstream),
                    "nginx-redis.conf lacks `{upstream}`"
                );
                site = site.replace(&upstream, &format!("server 127.0.0.1:{to}"));
            }
        }
        assert!(site.contains("listen 80;"));
        site = site
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
            .replace("listen [::]:80;", "");
        std::fs::write(dir.join("site.conf"), site).unwrap();
        let d = dir.display();
        let main = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  log_format upstream '$request_uri $upstream_addr';\n  \
             access_log {d}/logs/access.log upstream;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let test = Command::new("nginx")
            .arg("-t")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .output()
            .expect("run nginx -t");
        assert!(
            test.status.success(),
            "nginx -t failed:\n{}",
            String::from_utf8_lossy(&test.stderr)
        );
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + SECS(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port, dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits. (SIGKILL would leave the
        // workers running.) Only if it does not exit in time, kill it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + SECS(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP client whose connections come from `ip` (a loopback address of its own).
fn client_from(ip: &str) -> awc::Client {
    let ip: IpAddr = ip.parse().unwrap();
    awc::Client::builder()
        .connector(awc::Connector::new().local_address(ip))
        .timeout(SECS(10))
        .finish()
}

#[actix_rt::test]
async fn a_full_race_through_nginx_with_clients_from_different_addresses() {
    let redis = Redis::start();
    let servers: Vec<Server> = (1..=3)
        .map(|i| {
            let node = format!("app{i}");
            let redis = redis.addr();
            let args = [
                "-redis",
                &redis,
                "-node-id",
                &node,
                "-spectator-addr",
                "127.0.0.1:0",
            ];
            Server::start(&args)
        })
        .collect();
    for s in &servers {
        assert!(s.logs.wait_for("multi-server mode enabled", SECS(10)));
    }
    let watch_ports: Vec<u16> = servers.iter().map(|s| s.spectator_addr().port()).collect();
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|i| (servers[i].port(), watch_ports[i]))
        .collect();
    let nginx = Nginx::start([ports[0], ports[1], ports[2]]);
    let base = format!("127.0.0.1:{}", nginx.port);
    let (ann_ip, bob_ip) = ("127.0.1.1", "127.0.2.1");
    let ann_http = client_from(ann_ip);
    let bob_http = client_from(bob_ip);

    let mut res = ann_http
        .post(format!("http://{base}/api/games"))
        .send_json(&json!({"name": "ann", "winning_score": 5, "countdown": 1}))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: serde_json::Value = res.json().await.unwrap();
    let game_id = created["game_id"].as_str().unwrap().to_owned();
    // The invite link names the address players used: nginx's, not a backend's.
    assert_eq!(
        created["join_url"],
        format!("http://{base}/join/{game_id}").as_str()
    );
    let mut res = bob_http
        .post(format!("http://{base}/api/games/{game_id}/players"))
        .send_json(&json!({"name": "bob"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let joined: serde_json::Value = res.json().await.unwrap();

    // WebSockets through nginx, each from its own address, with a browser-like Origin.
    let origin = format!("http://{base}");
    let ws = |client: &awc::Client, token: &str| {
        client
            .ws(format!("ws://{base}/ws/{game_id}?token={token}"))
            .origin(origin.as_str())
            .connect()
    };
    let (_, ann_framed) = ws(&ann_http, created["token"].as_str().unwrap())
        .await
        .expect("ann's WebSocket through nginx");
    let (_, bob_framed) = ws(&bob_http, joined["token"].as_str().unwrap())
        .await
        .expect("bob's WebSocket through nginx");
    let mut ann = Player::from_framed(ann_framed).await;
    let mut bob = Player::from_framed(bob_framed).await;
    // A spectator through nginx: to a spectators' listener, the one of the game's server.
    let (_, watch_framed) = ann_http
        .ws(format!("ws://{base}/ws/{game_id}?watch=1"))
        .origin(origin.as_str())
        .connect()
        .await
        .expect("a spectator's WebSocket through nginx");
    let mut watch = Player::from_framed(watch_framed).await;
    ann.send(json!({"type": "start_countdown"})).await;
    bob.wait_game(SECS(10), |g| state(g) == "playing").await;
    bob.press_paced(5, Duration::from_millis(40)).await;
    for p in [&mut ann, &mut bob, &mut watch] {
        let game = p.wait_game(SECS(10), |g| state(g) == "finished").await;
        assert_eq!(game["winner"], joined["robot_id"]);
    }
    // nginx logs a WebSocket once it closed.
    drop(watch);
    let ws_logged = format!("/ws/{game_id}?watch=1 ");
    let mut access = String::new();
    for _ in 0..100 {
        access = std::fs::read_to_string(nginx.dir.join("logs/access.log")).unwrap();
        if access.contains(&ws_logged) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let upstream_of = |path: &str| {
        (access.lines())
            .find_map(|l| l.strip_prefix(path)?.strip_prefix(' '))
            .map(str::to_owned)
    };
    let watched = upstream_of(&format!("/ws/{game_id}?watch=1"));
    let spectator_listeners: Vec<String> = watch_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    assert!(
        watched
            .as_ref()
            .is_some_and(|u| spectator_listeners.contains(u)),
        "the spectator went to {watched:?}, not a spectators' listener:\n{access}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(
            &redis.get(&format!("game_state:{game_id}")).unwrap()
        )
        .unwrap()["state"],
        "finished"
    );
    // Servers log the players' own addresses (from X-Real-IP), not nginx's; both sockets,
    // from two addresses, reached the one server the game id hashes to.
    let logs: String = servers.iter().map(|s| s.logs.all()).collect();
    let both = servers.iter().filter(|s| {
        [ann_ip, bob_ip]
            .iter()
            .all(|ip| s.logs.contains(&format!("connected from {ip}")))
    });
    assert_eq!(
        both.count(),
        1,
        "the game's sockets were not on one server:\n{logs}"
    );
}

#[test]
fn nginx_conf_has_what_a_websocket_cluster_needs() {
    let conf = repo_file("nginx-redis.conf");
    for needed in [
        "upstream robot_race",
        "hash $robot_race_route consistent;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection \"upgrade\";",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_read_timeout 3600s;",
        "proxy_send_timeout 3600s;",
    ] {
        assert!(conf.contains(needed), "nginx-redis.conf lacks `{needed}`");
    }
    assert!(conf.contains("proxy_set_header Host $http_host;"));
}

#[test]
fn compose_file_runs_redis_three_servers_and_nginx() {
    let mut yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&repo_file("docker-compose-redis.yml")).expect("valid YAML");
    // Resolve `<<: *app` as compose does.
    yaml.apply_merge().expect("YAML merge keys");
    let compose = serde_json::to_value(yaml).unwrap();
    let services = &compose["services"];
    let redis = &services["redis"];
    assert!(redis["image"].as_str().unwrap().starts_with("redis:"));
    let redis_cmd = redis["command"].to_string();
    assert!(
        redis_cmd.contains("--appendonly") && redis_cmd.contains("yes"),
        "{redis_cmd}"
    );
    assert!(redis["volumes"][0].as_str().unwrap().ends_with(":/data"));
    assert!(compose["volumes"].get("redis-data").is_some());
    for (i, name) in ["app1", "app2", "app3"].iter().enumerate() {
        let app = &services[name];
        let cmd: Vec<&str> = app["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no command"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            &cmd[..4],
            ["-addr", ":8080", "-redis", "redis:6379"],
            "{name}"
        );
        assert_eq!(cmd[5], format!("app{}", i + 1));
        // Spectators on a listener of their own, where nginx sends them.
        assert_eq!(&cmd[6..8], ["-spectator-addr", ":8081"], "{name}");
        // nginx routes by game: a server needs only the games it follows as a replica.
        assert_eq!(&cmd[8..10], ["-subscribe", "per-game"], "{name}");
        assert!(app["healthcheck"]["test"].to_string().contains("/health"));
        assert_eq!(app["depends_on"]["redis"]["condition"], "service_healthy");
        // The merged anchor gives every server the build.
        assert!(
            app.get("build").is_some() || app.get("<<").is_some(),
            "{name}"
        );
        // These flags parse exactly as the binary reads them.
        let mut args = vec!["robot-race".to_owned()];
        args.extend(cmd.iter().map(|s| s.to_string()));
        let out = Command::new(BIN).args(&cmd).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name}: {cmd:?} do not parse");
    }
    let nginx = &services["nginx"];
    assert_eq!(nginx["ports"][0], "80:80");
    assert_eq!(
        nginx["volumes"][0],
        "./nginx-redis.conf:/etc/nginx/conf.d/default.conf:ro"
    );
    assert!(nginx["healthcheck"].is_object());
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_exposes_8080() {
    let file = repo_file("Dockerfile");
    let lines: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "two stages: build and run");
    assert!(froms[0].contains(" AS build"));
    assert!(froms[1].contains("slim"));
    assert!(lines.iter().any(|l| l.contains("cargo build --release")));
    assert!(lines.iter().any(|l| l.starts_with("COPY --from=build")));
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(!user.contains("root"));
    assert!(lines.contains(&"EXPOSE 8080"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("ENTRYPOINT") && l.contains("robot-race")));
    // Everything the build needs is copied in (the binary embeds static/ and templates/).
    for dir in ["src", "static", "templates", "Cargo.toml"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("COPY") && l.contains(dir)),
            "{dir}"
        );
    }
}

#[test]
fn heroku_files_bind_port_and_accept_the_self_signed_redis() {
    let procfile = repo_file("Procfile");
    assert!(procfile.starts_with("web: ") && procfile.contains("robot-race"));
    let app: serde_json::Value = serde_json::from_str(&repo_file("app.json")).unwrap();
    assert!(app["addons"][0]["plan"]
        .as_str()
        .unwrap()
        .starts_with("heroku-redis"));
    assert_eq!(app["env"]["REDIS_TLS_INSECURE"]["value"], "true");
}
