use super::*;

#[test]
fn plugins_run_in_upstreams_order_whatever_the_flags_say() {
    let on = enabled(&[], &[]).unwrap();
    assert_eq!(on.first(), Some(&"NamespaceLifecycle"));
    assert_eq!(on.last(), Some(&"ResourceQuota"));
    assert!(!on.contains(&"NodeRestriction"));
    let on = enabled(
        &[
            "ResourceQuota".into(),
            "NodeRestriction".into(),
            "AlwaysPullImages".into(),
        ],
        &["LimitRanger".into()],
    )
    .unwrap();
    let pos = |p: &str| on.iter().position(|x| *x == p).unwrap();
    assert!(pos("NodeRestriction") < pos("AlwaysPullImages"));
    assert!(pos("MutatingAdmissionWebhook") < pos("ValidatingAdmissionWebhook"));
    assert!(!on.contains(&"LimitRanger"));
    assert_eq!(
        enabled(&["Bogus".into()], &[]).unwrap_err().to_string(),
        "enable-admission-plugins plugin \"Bogus\" is unknown"
    );
    assert!(enabled(&["Priority".into()], &["Priority".into()]).is_err());
}
