//! Parsing the command line: single and double dashes, switches, topologies, addresses.
use super::*;

fn parse(args: &[&str]) -> Config {
    let mut all = vec!["robot-race".to_owned()];
    all.extend(args.iter().map(|s| s.to_string()));
    Config::try_from_args(all).unwrap()
}

#[test]
fn a_switch_before_a_single_dash_flag_leaves_it_a_flag() {
    let c = parse(&[
        "-same-thread",
        "-create-limit",
        "0",
        "-trust-proxy",
        "-addr",
        ":9",
    ]);
    assert!(c.same_thread && c.trust_proxy);
    assert_eq!((c.create_limit, c.addr.as_deref()), (0, Some(":9")));
}

#[test]
fn single_and_double_dash_both_work() {
    let one = parse(&["-addr", ":9000", "-redis", "localhost:6379"]);
    let two = parse(&["--addr", ":9000", "--redis=localhost:6379"]);
    for c in [one, two] {
        assert_eq!(c.addr.as_deref(), Some(":9000"));
        assert_eq!(c.redis_addr(), Some("localhost:6379"));
    }
    let c = parse(&["-redis-password", "-secret-", "-idle-timeout-secs=5"]);
    assert_eq!(c.redis_password.as_deref(), Some("-secret-"));
    assert_eq!(c.idle_timeout_secs, 5);
}

#[test]
fn topology_flags() {
    let c = parse(&["-redis", "h:1"]);
    assert_eq!(c.subscribe, Subscribe::Pattern);
    assert!(c.sentinels().is_empty());
    assert_eq!(c.redis_sentinel_master, "mymaster");
    let c = parse(&[
        "-subscribe",
        "per-game",
        "-redis-sentinel",
        "a:26379,b:26380",
        "-redis-sentinel-master=games",
    ]);
    assert_eq!(c.subscribe, Subscribe::PerGame);
    assert_eq!(c.sentinels(), ["a:26379", "b:26380"]);
    assert_eq!(c.redis_sentinel_master, "games");
    let c = parse(&["-redis-cluster", "a:7000, b:7001,"]);
    assert_eq!(c.cluster_nodes(), ["a:7000", "b:7001"]);
}

#[test]
fn listen_addresses() {
    assert_eq!(
        parse_listen_addr(":8080").unwrap(),
        "0.0.0.0:8080".parse().unwrap()
    );
    assert_eq!(
        parse_listen_addr("8081").unwrap(),
        "0.0.0.0:8081".parse().unwrap()
    );
    assert_eq!(
        parse_listen_addr("127.0.0.1:0").unwrap(),
        "127.0.0.1:0".parse().unwrap()
    );
    assert!(parse_listen_addr("nope").is_err());
    assert!(parse_listen_addr(":99999").is_err());
}

#[test]
fn unknown_single_dash_flags_are_errors_not_guesses() {
    let args = ["robot-race", "-bogus", "1"].map(String::from);
    assert!(Config::try_from_args(args).is_err());
}
