//! Step 03, part one: --network none and host, the names and DNS files, counters.
//! Needs root. No traffic leaves the container's own network namespace (only its own
//! loopback is used).

mod common;

use std::fs;

use common::*;

#[test]
fn network_none_has_only_loopback_and_it_is_up() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &["--network", "none"], &["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo loopback works"]);
    assert_eq!(stdout(&out), "lo\n0x9\nloopback works\n", "0x9 = IFF_UP|IFF_LOOPBACK: {}", stderr(&out));
    let inside = stdout(&run_in(&rootfs, &["--network", "none"], &["readlink", "/proc/self/ns/net"]));
    assert_ne!(inside.trim(), fs::read_link("/proc/self/ns/net").unwrap().to_str().unwrap());
}

#[test]
fn network_host_shares_the_hosts_interfaces() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let mut host: Vec<String> = fs::read_dir("/sys/class/net").unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    host.sort();
    let out = run_in(&rootfs, &["--network", "host"], &["ls", "/sys/class/net"]);
    assert_eq!(stdout(&out), host.join("\n") + "\n", "{}", stderr(&out));
}

#[test]
fn names_files_are_the_containers_own_and_the_image_is_untouched() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    let out = carton_run(&rootfs)
        .env("CARTON_ROOT", &state)
        .args(["--network", "none", "--hostname", "box", "--add-host", "db:192.0.2.10", "--dns", "192.0.2.53"])
        .args(["--", "sh", "-c", "cat /etc/hostname; cat /etc/hosts; grep nameserver /etc/resolv.conf; ls /proc/1/root/ >/dev/null; grep -c ' /etc/' /proc/self/mountinfo"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "box\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tbox\n192.0.2.10\tdb\nnameserver 192.0.2.53\n3\n", "{}", stderr(&out));
    // The image's files were only mount points: still empty, and no state is left behind.
    for name in ["hostname", "hosts", "resolv.conf"] {
        assert_eq!(fs::read(rootfs.join("etc").join(name)).unwrap(), b"", "/etc/{name} was written into the image");
    }
    assert_eq!(fs::read_dir(state.join("containers")).unwrap().count(), 0, "a container's state directory was left");
}

#[test]
fn resolv_conf_drops_the_hosts_loopback_nameservers_without_host_networking() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let out = run_in(&rootfs, &["--network", "none"], &["grep", "-c", "^nameserver 127\\.", "/etc/resolv.conf"]);
    assert_eq!(stdout(&out), "0\n", "{}", stderr(&out));
    let out = run_in(&rootfs, &["--network", "host"], &["cat", "/etc/resolv.conf"]);
    assert_eq!(stdout(&out), host, "with the host's network the host's resolv.conf works as it is");
}

#[test]
fn bad_network_options_are_clear_errors_with_exit_125() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    for (extra, message) in [
        (&["--network", "wifi"][..], "unknown network \"wifi\": choose bridge, none or host"),
        (&["--add-host", "db"][..], "invalid --add-host \"db\""),
        (&["--add-host", "db:300.1.1.1"][..], "not an IP address"),
        (&["--dns", "localhost"][..], "invalid --dns \"localhost\""),
        // Refused while parsing: nothing reaches the network (a valid -p would build a bridge,
        // which only tests inside a throwaway namespace may do).
        (&["-p", "8080:99999"][..], "invalid -p \"8080:99999\""),
    ] {
        let out = carton_run(&rootfs).env("CARTON_ROOT", &state).args(extra).args(["--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{extra:?}: {}", stderr(&out));
        assert!(!state.join("containers").exists() || fs::read_dir(state.join("containers")).unwrap().count() == 0, "{extra:?} left state");
    }
}

#[test]
fn counters_read_a_running_containers_own_namespace() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let mut child =
        carton_run(&rootfs).args(["--network", "none", "--", "sh", "-c", "ping -c 3 -i 0.2 127.0.0.1 >/dev/null; echo done; sleep 5"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let init = container_init(&child);
    let counters = step03::counters::read(init).unwrap();
    nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert_eq!(counters.len(), 1, "only lo: {counters:?}");
    let lo = &counters[0];
    // Three echo requests and three replies, each sent and received on lo.
    assert_eq!((lo.interface.as_str(), lo.tx_packets, lo.rx_packets), ("lo", 6, 6), "{lo:?}");
}

#[test]
fn by_default_a_container_gets_an_address_on_the_bridge_and_reaches_its_gateway() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let script = format!(
        "carton run --rm --hostname web --rootfs {} -- sh -c 'ip -4 -o addr show eth0 | tr -s \" \" | cut -d\" \" -f4; ip route | head -1; tail -n 1 /etc/hosts; ping -c 1 -W 2 10.88.0.1 >/dev/null && echo gateway answers'",
        rootfs.display()
    );
    let out = in_throwaway_netns(&dir.path().join("state"), &script);
    assert_eq!(stdout(&out), "10.88.0.2/16\ndefault via 10.88.0.1 dev eth0 \n10.88.0.2\tweb\ngateway answers\n", "{}", stderr(&out));
}

#[test]
fn the_network_namespace_is_pinned_by_name_while_the_container_runs() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    // The fifo says when the container runs; then its namespace is joined from outside
    // through the pinned file, as `nsenter --net=FILE` would for a user.
    let script = format!(
        "mkfifo {state}/ready\n\
         carton run --rm --rootfs {rootfs} -- sh -c 'echo up; exec sleep 5' > {state}/ready & carton=$!\n\
         read line < {state}/ready\n\
         pin=$(echo {state}/containers/*/netns)\n\
         nsenter --net=$pin ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4\n\
         grep -c \" $pin \" /proc/self/mountinfo\n\
         kill $carton; wait $carton\n\
         ls {state}/containers | wc -l\n\
         grep -c {state} /proc/self/mountinfo",
        state = state.display(),
        rootfs = rootfs.display()
    );
    fs::create_dir_all(&state).unwrap();
    let out = in_throwaway_netns(&state, &script);
    assert_eq!(stdout(&out), "10.88.0.2/16\n1\n0\n0\n", "pinned while it runs, gone after: {}", stderr(&out));
}

#[test]
fn two_bridged_containers_talk_tcp_and_leave_nothing_behind() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    let rootfs = rootfs.display();
    // A server on 10.88.0.2, a client on 10.88.0.3; then what is left in the namespace.
    let script = format!(
        "carton run --rm --network bridge --rootfs {rootfs} -- sh -c 'echo hello over the bridge | nc -l -p 7000' &\n\
         sleep 0.5\n\
         carton run --rm --network bridge --rootfs {rootfs} -- sh -c 'hostname -i; nc 10.88.0.2 7000'\n\
         wait\n\
         sleep 0.3\n\
         ip -o link | cut -d: -f2 | tr -d ' '\n\
         echo leases: $(cat {NETWORK_STATE}/leases)"
    );
    let out = in_throwaway_netns(&state, &script);
    assert_eq!(stdout(&out), "10.88.0.3\nhello over the bridge\nlo\ncarton0\nleases:\n", "no veth may be left, every address back in the pool: {}", stderr(&out));
}

#[test]
fn a_bad_subnet_is_a_clear_error() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let out = carton_run(&rootfs).env("CARTON_ROOT", dir.path()).env("CARTON_SUBNET", "10.88.0.0/33").args(["--network", "bridge", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("invalid subnet \"10.88.0.0/33\""), "{}", stderr(&out));
}

#[test]
fn outbound_nat_shows_the_hosts_address_to_the_internet_and_prune_removes_it_all() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    let seen = dir.path().join("seen");
    // Inside the throwaway namespace: a third namespace plays "the internet" at 192.0.2.2,
    // joined by a veth pair to this one (192.0.2.1). A server there prints the address
    // each connection comes from.
    let script = format!(
        "unshare --net sleep 20 & internet=$!\n\
         sleep 0.3\n\
         ip link add uplink type veth peer name wan netns $internet\n\
         ip addr add 192.0.2.1/24 dev uplink && ip link set uplink up\n\
         nsenter --net --target $internet sh -c 'ip link set lo up; ip addr add 192.0.2.2/24 dev wan; ip link set wan up'\n\
         nsenter --net --target $internet python3 -c \"import socket; s = socket.socket(); s.bind(('192.0.2.2', 8000)); s.listen(1); c, a = s.accept(); print(a[0]); c.close()\" > {seen} &\n\
         server=$!\n\
         sleep 0.5\n\
         carton run --rm --network bridge --rootfs {rootfs} -- sh -c 'echo hi | nc -w 2 192.0.2.2 8000; hostname -i'\n\
         wait $server\n\
         nft list table ip carton | grep -c masquerade\n\
         cat /proc/sys/net/ipv4/ip_forward\n\
         carton network prune\n\
         ip -o link | cut -d: -f2 | tr -d ' ' | grep -c carton0\n\
         nft list tables | grep -c carton\n\
         cat /proc/sys/net/ipv4/ip_forward\n\
         kill $internet",
        seen = seen.display(),
        rootfs = rootfs.display()
    );
    let out = in_throwaway_netns(&state, &script);
    assert_eq!(
        stdout(&out),
        "10.88.0.2\n1\n1\nremoved the bridge carton0\nremoved the nftables table ip carton\nremoved the IP forwarding carton switched on (it is off again, as before)\n0\n0\n0\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&seen).unwrap(), "192.0.2.1\n", "the server saw the host's address, not the container's 10.88.0.2");
}

#[test]
fn a_published_port_serves_http_from_loopback_and_from_another_host() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    // busybox httpd in the container on port 80, published as 8088. A second namespace
    // (192.0.2.2) plays another host that reaches this one at 192.0.2.1.
    let script = format!(
        "carton run --rm --init -p 8088:80 --rootfs {rootfs} -- sh -c 'mkdir -p /www && echo hello from httpd > /www/index.html && exec httpd -f -p 80 -h /www' &\n\
         container=$!\n\
         unshare --net sleep 20 & other=$!\n\
         sleep 0.8\n\
         busybox wget -q -O - http://127.0.0.1:8088/\n\
         ip link add uplink type veth peer name lan netns $other\n\
         ip addr add 192.0.2.1/24 dev uplink && ip link set uplink up\n\
         nsenter --net --target $other sh -c 'ip link set lo up; ip addr add 192.0.2.2/24 dev lan; ip link set lan up; busybox wget -q -O - http://192.0.2.1:8088/'\n\
         kill -TERM $container; wait $container; echo \"carton exit $?\"\n\
         ss -Hltn 'sport = :8088' | wc -l\n\
         ip -o link | cut -d: -f2 | cut -d@ -f1 | tr -d ' ' | tr '\\n' ' '; echo\n\
         kill $other",
        rootfs = rootfs.display()
    );
    let out = in_throwaway_netns(&state, &script);
    assert_eq!(stdout(&out), "hello from httpd\nhello from httpd\ncarton exit 143\n0\nlo carton0 uplink \n", "after the container: nothing listens on 8088 and no veth is left. {}", stderr(&out));
}

#[test]
fn a_port_in_use_or_a_malformed_one_stops_the_run_before_anything_is_set_up() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    let script = format!(
        "busybox nc -l -p 8089 & holder=$!\n\
         sleep 0.3\n\
         carton run --rm -p 8089:80 --rootfs {rootfs} -- true; echo \"exit $?\"\n\
         carton run --rm -p 8089:99999 --rootfs {rootfs} -- true; echo \"exit $?\"\n\
         carton run --rm --network none -p 8090:80 --rootfs {rootfs} -- true; echo \"exit $?\"\n\
         kill $holder\n\
         ip -o link | cut -d: -f2 | tr -d ' ' | tr '\\n' ' '; echo\n\
         ls {state}/containers | wc -l",
        rootfs = rootfs.display(),
        state = state.display()
    );
    let out = in_throwaway_netns(&state, &script);
    assert_eq!(stdout(&out), "exit 125\nexit 125\nexit 125\nlo \n0\n", "no bridge, no veth, no state: {}", stderr(&out));
    let errors = stderr(&out);
    assert!(errors.contains("cannot publish 0.0.0.0:8089 -> 80/tcp: 0.0.0.0:8089 is not free"), "{errors}");
    assert!(errors.contains("invalid -p \"8089:99999\""), "{errors}");
    assert!(errors.contains("-p publishes a port of the container's own address: it needs --network bridge"), "{errors}");
}

#[test]
fn in_host_mode_the_containers_own_name_resolves() {
    require_root();
    let (_dir, rootfs) = fresh_rootfs();
    let out = run_in(&rootfs, &["--network", "host"], &["sh", "-c", "grep -c \"$(hostname)\" /etc/hosts; ping -c 1 -W 2 \"$(hostname)\" | head -n 1 | cut -d' ' -f3"]);
    assert_eq!(stdout(&out), "1\n(127.0.1.1):\n", "{}", stderr(&out));
}

#[test]
fn a_rejected_run_leaves_the_network_alone_and_a_killed_run_is_collected_by_the_next() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    let script = format!(
        "carton run --rm -p 8080:80 --hostname bad_name --rootfs {rootfs} -- true; echo \"exit $?\"\n\
         ip -o link | grep -c carton0; nft list tables | grep -c carton; cat /proc/sys/net/ipv4/ip_forward\n\
         carton run --rm --network bridge --rootfs {rootfs} -- sleep 30 & carton=$!\n\
         sleep 0.7; kill -KILL $carton; wait $carton; sleep 0.3\n\
         grep -c {state}/containers/ /proc/self/mountinfo\n\
         carton run --rm --network bridge --rootfs {rootfs} -- hostname -i\n\
         ls {state}/containers | wc -l; grep -c {state}/containers/ /proc/self/mountinfo; ip -o link | grep -c veth\n\
         CARTON_SUBNET=10.99.0.0/16 carton run --rm --network bridge --rootfs {rootfs} -- true; echo \"exit $?\"",
        rootfs = rootfs.display(),
        state = state.display()
    );
    let out = in_throwaway_netns(&state, &script);
    assert_eq!(
        stdout(&out),
        "exit 125\n0\n0\n0\n1\n10.88.0.2\n0\n0\n0\nexit 125\n",
        "nothing set up for a refused run; the killed run's pinned namespace, cable and address are collected by the next run; another subnet is refused: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("carton0 serves 10.88.0.0/16 but 10.99.0.0/16 was asked for"), "{}", stderr(&out));
}

#[test]
fn prune_leaves_forwarding_on_when_the_host_had_switched_it_on_itself() {
    require_root();
    let (dir, rootfs) = fresh_rootfs();
    let state = dir.path().join("state");
    // A host that forwards already (one running Docker, a router): carton must not take that away.
    let script = format!(
        "echo 1 > /proc/sys/net/ipv4/ip_forward\n\
         carton run --rm --network bridge --rootfs {rootfs} -- true\n\
         carton network prune\n\
         cat /proc/sys/net/ipv4/ip_forward",
        rootfs = rootfs.display()
    );
    let out = in_throwaway_netns(&state, &script);
    assert_eq!(stdout(&out), "removed the bridge carton0\nremoved the nftables table ip carton\n1\n", "{}", stderr(&out));
}
