//! One table per operator, from Marathon's constraint documentation examples, on the rack
//! layout of [`racks`]: n1, n2 rack-1; n3, n4 rack-2; n5 rack-3; n6 no rack; n7 rack-7;
//! n8 rack-8.

use crate::placement::fixtures::{TestApp, app, check, node, racks};

/// Constraints `(field, operator, value)`, number of instances, expected rendering.
type Case<'a> = (&'a [(&'a str, &'a str, Option<&'a str>)], usize, &'a str);

/// Places each case on [`racks`], nothing bound.
#[track_caller]
fn table(cases: &[Case<'_>]) {
    for (constraints, count, expect) in cases {
        let mut web = app("web");
        for (field, operator, value) in *constraints {
            web = web.constraint(field, operator, *value);
        }
        check(&racks(), Vec::new(), &[(&web, *count)], expect);
    }
}

#[test]
fn unique() {
    table(&[
        // ["hostname", "UNIQUE"]: one instance per host.
        (
            &[("hostname", "UNIQUE", None)],
            9,
            "web: n1 n2 n3 n4 n5 n6 n7 n8 | 1 pending: 0/8 nodes available: 8 did not match \
             constraint hostname:UNIQUE",
        ),
        (&[("@hostname", "UNIQUE", None)], 3, "web: n1 n2 n3"),
        // Marathon echoes an empty third element.
        (&[("hostname", "UNIQUE", Some(""))], 2, "web: n1 n2"),
        // On an attribute: one per rack; n6 lacks the attribute and is never chosen.
        (
            &[("rack_id", "UNIQUE", None)],
            6,
            "web: n1 n3 n5 n7 n8 | 1 pending: 0/8 nodes available: 8 did not match constraint \
             rack_id:UNIQUE",
        ),
    ]);
}

#[test]
fn cluster() {
    table(&[
        // ["rack_id", "CLUSTER", "rack-1"]: all on rack-1.
        (&[("rack_id", "CLUSTER", Some("rack-1"))], 3, "web: n1×2 n2"),
        (
            &[("rack_id", "CLUSTER", Some("rack-9"))],
            1,
            "web: | 1 pending: 0/8 nodes available: 8 did not match constraint \
             rack_id:CLUSTER:rack-9",
        ),
        // ["hostname", "CLUSTER", "n3"]: all on one host.
        (&[("hostname", "CLUSTER", Some("n3"))], 2, "web: n3×2"),
        // Without a value, the first placement pins the value (rack-1 here, n1 being first).
        (&[("rack_id", "CLUSTER", None)], 3, "web: n1×2 n2"),
        (&[("hostname", "CLUSTER", None)], 3, "web: n1×3"),
    ]);
}

#[test]
fn cluster_without_value_follows_existing_instances() {
    let web = app("web").constraint("rack_id", "CLUSTER", None);
    check(&racks(), web.bound("n4", 1), &[(&web, 3)], "web: n3×2 n4");
    // Disagreeing instances (constraint added later): the value most of them have wins.
    let mut bound = web.bound("n1", 1);
    bound.extend(web.bound("n5", 2));
    check(&racks(), bound, &[(&web, 1)], "web: n5");
    // Ties go to the smallest value.
    let mut bound = web.bound("n5", 1);
    bound.extend(web.bound("n3", 1));
    check(&racks(), bound, &[(&web, 1)], "web: n4");
}

#[test]
fn group_by() {
    table(&[
        // ["rack_id", "GROUP_BY"]: even over the known racks (rack-1, -2, -3, -7, -8).
        (&[("rack_id", "GROUP_BY", None)], 5, "web: n1 n3 n5 n7 n8"),
        (
            &[("rack_id", "GROUP_BY", None)],
            7,
            "web: n1 n2 n3 n4 n5 n7 n8",
        ),
        (
            &[("rack_id", "GROUP_BY", None)],
            11,
            "web: n1×2 n2 n3 n4 n5×2 n7×2 n8×2",
        ),
        // Known values are those of nodes the App can use: LIKE narrows them to three racks.
        (
            &[
                ("rack_id", "LIKE", Some("rack-[1-3]")),
                ("rack_id", "GROUP_BY", None),
            ],
            6,
            "web: n1 n2 n3 n4 n5×2",
        ),
        // ["rack_id", "GROUP_BY", "3"]: as Marathon, a used value is only accepted again once
        // three values are used.
        (
            &[
                ("rack_id", "LIKE", Some("rack-[1-3]")),
                ("rack_id", "GROUP_BY", Some("3")),
            ],
            6,
            "web: n1 n2 n3 n4 n5×2",
        ),
        // On hostname: one per host before any host gets a second.
        (
            &[("hostname", "GROUP_BY", None)],
            9,
            "web: n1×2 n2 n3 n4 n5 n6 n7 n8",
        ),
    ]);
}

#[test]
fn group_by_with_a_count_waits_for_that_many_values() {
    // Only two racks exist: after one instance on each, Marathon's rule refuses both.
    let nodes = [
        node("a1").attr("rack_id", "rack-1").build(),
        node("a2").attr("rack_id", "rack-1").build(),
        node("b1").attr("rack_id", "rack-2").build(),
    ];
    let web = app("web").constraint("rack_id", "GROUP_BY", Some("3"));
    check(
        &nodes,
        Vec::new(),
        &[(&web, 3)],
        "web: a1 b1 | 1 pending: 0/3 nodes available: 3 did not match constraint \
         rack_id:GROUP_BY:3",
    );
    // Without a count the two known racks are enough.
    let web = app("web").constraint("rack_id", "GROUP_BY", None);
    check(&nodes, Vec::new(), &[(&web, 3)], "web: a1 a2 b1");
}

#[test]
fn group_by_rebalances_existing_instances() {
    let web = app("web")
        .constraint("rack_id", "LIKE", Some("rack-[1-3]"))
        .constraint("rack_id", "GROUP_BY", None);
    check(
        &racks(),
        web.bound("n1", 2),
        &[(&web, 4)],
        "web: n3 n4 n5×2",
    );
}

#[test]
fn group_by_is_strict_when_the_least_used_value_is_full() {
    // rack-2's only node fits one instance: the App waits rather than skew onto rack-1.
    let nodes = [
        node("a1").attr("rack_id", "rack-1").build(),
        node("a2").attr("rack_id", "rack-1").build(),
        node("b1").attr("rack_id", "rack-2").cpus(0.1).build(),
    ];
    let web = app("web").constraint("rack_id", "GROUP_BY", None);
    check(
        &nodes,
        Vec::new(),
        &[(&web, 4)],
        "web: a1 a2 b1 | 1 pending: 0/3 nodes available: 2 did not match constraint \
         rack_id:GROUP_BY, 1 insufficient cpus",
    );
}

#[test]
fn like_and_unlike_match_whole_values() {
    table(&[
        // ["rack_id", "LIKE", "rack-[1-3]"].
        (
            &[("rack_id", "LIKE", Some("rack-[1-3]"))],
            5,
            "web: n1 n2 n3 n4 n5",
        ),
        // Full match: "rack-" matches no value entirely.
        (
            &[("rack_id", "LIKE", Some("rack-"))],
            1,
            "web: | 1 pending: 0/8 nodes available: 8 did not match constraint \
             rack_id:LIKE:rack-",
        ),
        // ".*" matches any present value, not an absent one.
        (
            &[("rack_id", "LIKE", Some(".*"))],
            7,
            "web: n1 n2 n3 n4 n5 n7 n8",
        ),
        // ["rack_id", "UNLIKE", "rack-[7-9]"]: n6, lacking the attribute, is accepted.
        (
            &[("rack_id", "UNLIKE", Some("rack-[7-9]"))],
            6,
            "web: n1 n2 n3 n4 n5 n6",
        ),
        // Alternation is anchored as a whole.
        (
            &[("rack_id", "UNLIKE", Some("rack-1|rack-2"))],
            4,
            "web: n5 n6 n7 n8",
        ),
        // On hostname.
        (&[("hostname", "LIKE", Some("n[1-3]"))], 3, "web: n1 n2 n3"),
        (&[("@hostname", "UNLIKE", Some("n[1-7]"))], 1, "web: n8"),
    ]);
}

#[test]
fn max_per() {
    table(&[
        // ["rack_id", "MAX_PER", "2"]: at most two per rack.
        (
            &[("rack_id", "MAX_PER", Some("2"))],
            11,
            "web: n1 n2 n3 n4 n5×2 n7×2 n8×2 | 1 pending: 0/8 nodes available: 8 did not \
             match constraint rack_id:MAX_PER:2",
        ),
        (&[("hostname", "MAX_PER", Some("2"))], 3, "web: n1 n2 n3"),
        (
            &[("hostname", "MAX_PER", Some("2"))],
            17,
            "web: n1×2 n2×2 n3×2 n4×2 n5×2 n6×2 n7×2 n8×2 | 1 pending: 0/8 nodes available: 8 did not match constraint hostname:MAX_PER:2",
        ),
        (
            &[("hostname", "MAX_PER", Some("0"))],
            1,
            "web: | 1 pending: 0/8 nodes available: 8 did not match constraint \
             hostname:MAX_PER:0",
        ),
    ]);
}

#[test]
fn is_compares_rounded_scalars() {
    // Marathon's examples: attribute level:0.8 matches IS "0.8", "0.80" and "0.8001".
    let nodes = [
        node("l1").attr("level", "0.8").build(),
        node("l2").attr("level", "0.80").build(),
        node("l3").attr("level", "0.8001").build(),
        node("l4").attr("level", "0.81").build(),
        node("l5").attr("level", "high").build(),
        node("l6").build(),
    ];
    for (operator, value, count, expect) in [
        ("IS", "0.8", 3, "web: l1 l2 l3"),
        ("IS", "0.80", 3, "web: l1 l2 l3"),
        ("IS", "0.8001", 3, "web: l1 l2 l3"),
        // 0.8005 is just below the tie as a double: rounds down, as DecimalFormat does.
        ("IS", "0.8005", 3, "web: l1 l2 l3"),
        ("IS", "0.81", 1, "web: l4"),
        ("IS", "0.810", 1, "web: l4"),
        ("IS", "high", 1, "web: l5"),
        ("IS", "0.8", 4, "web: l1×2 l2 l3"),
        // LIKE sees the rounded value too.
        ("LIKE", "0\\.8", 3, "web: l1 l2 l3"),
        ("LIKE", "0\\.8.*", 4, "web: l1 l2 l3 l4"),
        ("UNLIKE", "0\\.8", 3, "web: l4 l5 l6"),
        // CLUSTER compares the value as written (Marathon rounds the constraint only for IS).
        ("CLUSTER", "0.8", 3, "web: l1 l2 l3"),
        (
            "CLUSTER",
            "0.80",
            1,
            "web: | 1 pending: 0/6 nodes available: 6 did not match constraint \
             level:CLUSTER:0.80",
        ),
    ] {
        let web = app("web").constraint("level", operator, Some(value));
        check(&nodes, Vec::new(), &[(&web, count)], expect);
    }
    let web = app("web").constraint("level", "IS", Some("0.9"));
    check(
        &nodes,
        Vec::new(),
        &[(&web, 1)],
        "web: | 1 pending: 0/6 nodes available: 6 did not match constraint level:IS:0.9",
    );
}

#[test]
fn fault_domains_are_fields() {
    let nodes = [
        node("a").region("eu").zone("eu-1").build(),
        node("b").region("eu").zone("eu-1").build(),
        node("c").region("eu").zone("eu-2").build(),
        node("d").region("us").zone("us-1").build(),
        node("e").build(),
    ];
    let cases: [Case<'_>; 4] = [
        (&[("@zone", "GROUP_BY", None)], 3, "web: a c d"),
        (&[("@region", "CLUSTER", Some("eu"))], 4, "web: a×2 b c"),
        (&[("@zone", "UNIQUE", None)], 3, "web: a c d"),
        // A node without a zone is only accepted by UNLIKE.
        (&[("@zone", "UNLIKE", Some("eu-.*"))], 2, "web: d e"),
    ];
    for (constraints, count, expect) in cases {
        let mut web: TestApp = app("web");
        for (field, operator, value) in constraints {
            web = web.constraint(field, operator, *value);
        }
        check(&nodes, Vec::new(), &[(&web, count)], expect);
    }
}

#[test]
fn hostname_is_the_reported_host_name() {
    let nodes = [
        node("n1").hostname("web-1.example.com").build(),
        node("n2").hostname("db-1.example.com").build(),
        node("n3").build(),
    ];
    let web = app("web").constraint("hostname", "LIKE", Some("web-.*"));
    check(&nodes, Vec::new(), &[(&web, 2)], "web: n1×2");
    let api = app("api").constraint("@hostname", "LIKE", Some("n.*"));
    check(&nodes, Vec::new(), &[(&api, 1)], "api: n3");
}

#[test]
fn constraints_combine() {
    table(&[
        // One per host, on racks 1-3 only.
        (
            &[
                ("hostname", "UNIQUE", None),
                ("rack_id", "LIKE", Some("rack-[1-3]")),
            ],
            6,
            "web: n1 n2 n3 n4 n5 | 1 pending: 0/8 nodes available: 5 did not match constraint \
             hostname:UNIQUE, 3 did not match constraint rack_id:LIKE:rack-[1-3]",
        ),
    ]);
}

#[test]
fn attributes_missing_are_refused_by_all_but_unlike() {
    let nodes = [node("bare").build()];
    for (operator, value) in [
        ("UNIQUE", None),
        ("CLUSTER", None),
        ("CLUSTER", Some("x")),
        ("GROUP_BY", None),
        ("GROUP_BY", Some("2")),
        ("LIKE", Some(".*")),
        ("MAX_PER", Some("5")),
        ("IS", Some("x")),
    ] {
        let web = app("web").constraint("rack_id", operator, value);
        let label = match value {
            Some(value) => format!("rack_id:{operator}:{value}"),
            None => format!("rack_id:{operator}"),
        };
        check(
            &nodes,
            Vec::new(),
            &[(&web, 1)],
            &format!("web: | 1 pending: 0/1 nodes available: 1 did not match constraint {label}"),
        );
    }
    let web = app("web").constraint("rack_id", "UNLIKE", Some(".*"));
    check(&nodes, Vec::new(), &[(&web, 1)], "web: bare");
}
