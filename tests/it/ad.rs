//! Active Directory habits, against a real Samba AD DC (`scim_bridge::samba::SambaDc`)
//! and the shipped `examples/ldap-ad.yaml` (its mapping; the target pointed at the DC):
//! `user` objects named by CN with a 20-character sAMAccountName and the UPN,
//! userAccountControl's disable bit set and cleared with every other bit kept, renames by
//! modifyDN, groups whose members exist first, tombstones that do not block a re-create,
//! referrals in subtree searches, memberOf left to the server. The tests are in the
//! `samba` module: nextest runs them one at a time (Samba's ports are fixed).

mod samba {

    use serde_json::{Value, json};

    use crate::harness::Daemon;
    use scim_bridge::samba::SambaDc;

    const EXAMPLE: &str = include_str!("../../examples/ldap-ad.yaml");
    const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

    /// The DC and a daemon with the example's mapping, pointed at it.
    fn start() -> (SambaDc, Daemon) {
        let dc = SambaDc::start().unwrap_or_else(|e| panic!("{e}"));
        let mapping = &EXAMPLE[EXAMPLE.find("\nmapping:").expect("a mapping section") + 1..];
        let d = Daemon::start_with(&format!("{}{mapping}", dc.target_yaml()));
        (dc, d)
    }

    /// The entries under `base` matching `filter`, as (dn, attribute → values).
    fn search(
        dc: &SambaDc,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Vec<(String, Vec<(String, String)>)> {
        let ldif = dc
            .ldapsearch(base, filter, attrs)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        for block in ldif.split("\n\n") {
            let mut dn = None;
            let mut values = Vec::new();
            for line in block.lines() {
                if line.starts_with('#') {
                    continue;
                }
                if let Some(v) = line.strip_prefix("dn: ") {
                    dn = Some(v.to_string());
                } else if let Some((k, v)) = line.split_once(": ") {
                    // `attr:: base64` (binary or unsafe values): kept as the base64 text.
                    let k = k.trim_end_matches(':');
                    values.push((k.to_ascii_lowercase(), v.to_string()));
                }
            }
            if let Some(dn) = dn {
                out.push((dn, values));
            }
        }
        out
    }

    fn one(dc: &SambaDc, dn: &str, attr: &str) -> Option<String> {
        search(dc, dn, "(objectClass=*)", &[attr])
            .first()
            .and_then(|(_, v)| {
                v.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                    .map(|(_, v)| v.clone())
            })
    }

    fn people(dc: &SambaDc) -> String {
        format!("OU=people,{}", dc.base)
    }

    async fn create(d: &Daemon, doc: Value) -> String {
        let r = d.post("/Users", &doc.to_string()).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().expect("id").to_string()
    }

    async fn patch(d: &Daemon, path: &str, ops: Value) {
        let r = d
            .patch(
                path,
                &json!({"schemas": [PATCH_OP], "Operations": ops}).to_string(),
            )
            .await;
        assert!(r.status == 200 || r.status == 204, "{}", r.text);
    }

    fn uac(dc: &SambaDc, dn: &str) -> u32 {
        one(dc, dn, "userAccountControl")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no userAccountControl at {dn}"))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_user_becomes_an_ad_user_named_by_cn_with_a_short_logon_name_and_its_upn() {
        let (dc, d) = start();
        let id = create(
            &d,
            json!({
                "userName": "Christopher.Johnson-Smythe@contoso.com",
                "displayName": "Chris Johnson",
                "name": {"givenName": "Chris", "familyName": "Johnson"},
                "emails": [{"type": "work", "value": "chris@contoso.com"}],
                "title": "Engineer",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "department": "R&D", "employeeNumber": "4711"
                }
            }),
        )
        .await;
        let dn = format!("CN=Chris Johnson,{}", people(&dc));
        let sam = one(&dc, &dn, "sAMAccountName").expect("sAMAccountName");
        assert_eq!(sam, format!("christopher-{}", &id[28..]), "{id}");
        assert!(sam.chars().count() <= 20);
        for (attr, value) in [
            (
                "userPrincipalName",
                "Christopher.Johnson-Smythe@contoso.com",
            ),
            ("givenName", "Chris"),
            ("sn", "Johnson"),
            ("mail", "chris@contoso.com"),
            ("title", "Engineer"),
            ("department", "R&D"),
            ("employeeNumber", "4711"),
        ] {
            assert_eq!(one(&dc, &dn, attr).as_deref(), Some(value), "{attr}");
        }
        // Created without a password, AD makes it a disabled account (512 + 32 + 2): the
        // bridge converges the SCIM user's state (active) right away, bit 2 cleared.
        assert_eq!(uac(&dc, &dn), 544);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn disable_sets_bit_2_of_user_account_control_and_enable_clears_it_keeping_the_others() {
        let (dc, d) = start();
        let id = create(
            &d,
            json!({"userName": "uac@contoso.com", "displayName": "Uac Test"}),
        )
        .await;
        let dn = format!("CN=Uac Test,{}", people(&dc));
        assert_eq!(
            uac(&dc, &dn),
            544,
            "created enabled: bit 2 cleared, 512 + 32 kept"
        );
        // An administrator sets DONT_EXPIRE_PASSWORD (0x10000) by hand.
        dc.ldapmodify(&format!(
            "dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {}\n",
            544 | 0x10000
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        patch(
            &d,
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
        assert_eq!(
            uac(&dc, &dn),
            544 | 0x10000 | 2,
            "disabled: only bit 2 added"
        );
        patch(
            &d,
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )
        .await;
        assert_eq!(uac(&dc, &dn), 544 | 0x10000, "enabled: only bit 2 removed");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_new_display_name_renames_the_entry_by_modify_dn_keeping_its_guid_and_groups() {
        let (dc, d) = start();
        let id = create(
            &d,
            json!({"userName": "ren@contoso.com", "displayName": "Old Name"}),
        )
        .await;
        let old = format!("CN=Old Name,{}", people(&dc));
        let guid = one(&dc, &old, "objectGUID").expect("objectGUID");
        let g = d
            .post(
                "/Groups",
                &json!({"displayName": "Team", "members": [{"value": id}]}).to_string(),
            )
            .await;
        assert_eq!(g.status, 201, "{}", g.text);
        let team = format!("CN=Team,OU=groups,{}", dc.base);
        patch(
            &d,
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "displayName", "value": "New Name"}]),
        )
        .await;
        let new = format!("CN=New Name,{}", people(&dc));
        assert_eq!(
            one(&dc, &new, "objectGUID"),
            Some(guid),
            "moved, not re-created"
        );
        assert!(search(&dc, &old, "(objectClass=*)", &["1.1"]).is_empty());
        assert_eq!(one(&dc, &team, "member"), Some(new.clone()));
        // memberOf is the server's: it follows, and the bridge never wrote it.
        assert_eq!(one(&dc, &new, "memberOf"), Some(team));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_group_lists_members_that_exist_and_may_be_empty() {
        let (dc, d) = start();
        let a = create(
            &d,
            json!({"userName": "a@contoso.com", "displayName": "Member A"}),
        )
        .await;
        let b = create(
            &d,
            json!({"userName": "b@contoso.com", "displayName": "Member B"}),
        )
        .await;
        let g = d
            .post(
                "/Groups",
                &json!({"displayName": "Crew", "members": [{"value": a}, {"value": b}]})
                    .to_string(),
            )
            .await;
        assert_eq!(g.status, 201, "{}", g.text);
        let gid = g.body["id"].as_str().expect("id");
        let crew = format!("CN=Crew,OU=groups,{}", dc.base);
        let members: Vec<String> = search(&dc, &crew, "(objectClass=*)", &["member"])
            .into_iter()
            .flat_map(|(_, v)| v.into_iter().filter(|(k, _)| k == "member").map(|(_, v)| v))
            .collect();
        assert_eq!(members.len(), 2, "{members:?}");
        let sam = one(&dc, &crew, "sAMAccountName").expect("a group's sAMAccountName");
        assert!(
            sam.starts_with("Crew-") && sam.chars().count() <= 20,
            "{sam}"
        );
        patch(
            &d,
            &format!("/Groups/{gid}"),
            json!([{"op": "Replace", "path": "members", "value": []}]),
        )
        .await;
        assert_eq!(one(&dc, &crew, "member"), None, "an AD group may be empty");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_deleted_users_tombstone_does_not_block_creating_it_again() {
        let (dc, d) = start();
        let doc = json!({"userName": "again@contoso.com", "displayName": "Again"});
        let id = create(&d, doc.clone()).await;
        assert_eq!(d.delete(&format!("/Users/{id}")).await.status, 204);
        let dn = format!("CN=Again,{}", people(&dc));
        assert!(
            search(&dc, &dn, "(objectClass=*)", &["1.1"]).is_empty(),
            "deleted"
        );
        create(&d, doc).await;
        assert_eq!(
            one(&dc, &dn, "userPrincipalName").as_deref(),
            Some("again@contoso.com")
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reconcile_reads_the_domain_past_its_referrals_and_finds_no_drift() {
        let (_dc, d) = start();
        create(
            &d,
            json!({"userName": "rec@contoso.com", "displayName": "Reconciled"}),
        )
        .await;
        let report = d.reconcile_in_sync();
        assert!(report.contains("1 in sync, 0 differ, 0 orphan"), "{report}");
    }

    #[test]
    fn check_config_online_accepts_the_example_and_refuses_a_logon_name_that_can_exceed_20() {
        let dc = SambaDc::start().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |mapping: &str| {
            crate::harness::check_config_online(
                dir.path(),
                &format!("{}{mapping}", dc.target_yaml()),
            )
        };
        let mapping = &EXAMPLE[EXAMPLE.find("\nmapping:").expect("mapping") + 1..];
        let (code, text) = run(mapping);
        assert_eq!(code, Some(0), "{text}");
        let long = mapping.replace(
            r#"expr: 'Join("", Left(ToLower(Word([userName], 1, "@")), 11), "-", Mid([id], 29, 8))'"#,
            "expr: 'ToLower(Word([userName], 1, \"@\"))'",
        );
        assert_ne!(long, mapping);
        let (code, text) = run(&long);
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains("'sAMAccountName' can be of any length"),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn with_the_dc_down_writes_succeed_and_are_delivered_in_order_when_it_returns() {
        let (mut dc, d) = start();
        create(
            &d,
            json!({"userName": "before@contoso.com", "displayName": "Before"}),
        )
        .await;
        dc.stop();
        let id = create(
            &d,
            json!({"userName": "during@contoso.com", "displayName": "During", "title": "one"}),
        )
        .await;
        patch(
            &d,
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "title", "value": "two"}]),
        )
        .await;
        let g = d
            .post(
                "/Groups",
                &json!({"displayName": "Outage Crew", "members": [{"value": id}]}).to_string(),
            )
            .await;
        assert_eq!(
            g.status, 201,
            "an outage is not the provider's problem: {}",
            g.text
        );
        patch(
            &d,
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "displayName", "value": "After"}]),
        )
        .await;
        dc.start_again().unwrap_or_else(|e| panic!("{e}"));
        let after = format!("CN=After,{}", people(&dc));
        let crew = format!("CN=Outage Crew,OU=groups,{}", dc.base);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if one(&dc, &after, "title").as_deref() == Some("two")
                && one(&dc, &crew, "member").as_deref() == Some(after.as_str())
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pending changes were not delivered in order: {:?} {:?}",
                one(&dc, &after, "title"),
                one(&dc, &crew, "member")
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let during = format!("CN=During,{}", people(&dc));
        assert!(
            search(&dc, &during, "(objectClass=*)", &["1.1"]).is_empty(),
            "renamed, not copied"
        );
        let report = d.reconcile_in_sync();
        assert!(
            report.contains("3 resources compared: 3 in sync, 0 differ, 0 orphan"),
            "{report}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn entra_users_and_groups_are_converged_into_ad() {
        use crate::harness::{fill, fixture};
        let (dc, d) = start();
        let r = d
            .post("/Users", &fixture("entra/1.1-create-user.json"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let uid = r.body["id"].as_str().expect("id").to_string();
        // No displayName: the CN is the userName.
        let dn = format!(
            "CN=Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee,{}",
            people(&dc)
        );
        assert_eq!(
            one(&dc, &dn, "userPrincipalName").as_deref(),
            Some("Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee")
        );
        let sam = one(&dc, &dn, "sAMAccountName").expect("sAMAccountName");
        assert_eq!(sam, format!("test_user_0-{}", &uid[28..]));
        assert_eq!(one(&dc, &dn, "sn").as_deref(), Some("familyName"));
        // Entra's mixed PATCH.
        let r = d
            .patch(
                &format!("/Users/{uid}"),
                &fill(&fixture("entra/1.5-patch-user-mixed-ops.json"), &[]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            one(&dc, &dn, "mail").as_deref(),
            Some("AdeleV2@REDACTED.onmicrosoft.com")
        );
        assert_eq!(one(&dc, &dn, "department").as_deref(), Some("Retail"));
        // A group, then the user as its member.
        let g = d
            .post("/Groups", &fixture("entra/1.9-create-group.json"))
            .await;
        assert_eq!(g.status, 201, "{}", g.text);
        let gid = g.body["id"].as_str().expect("id").to_string();
        let group = format!("CN=displayName,OU=groups,{}", dc.base);
        let add = fill(
            &fixture("entra/1.13-add-member.json"),
            &[("MEMBER_ID", &uid)],
        );
        assert_eq!(d.patch(&format!("/Groups/{gid}"), &add).await.status, 204);
        assert_eq!(one(&dc, &group, "member"), Some(dn.clone()));
        // Entra renames the userName: the UPN follows, the CN (no displayName) too, the
        // logon name stays, the group follows the move.
        let r = d
            .patch(
                &format!("/Users/{uid}"),
                &fill(&fixture("entra/1.6-patch-username.json"), &[]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let renamed = format!(
            "CN=5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com,{}",
            people(&dc)
        );
        assert_eq!(
            one(&dc, &renamed, "userPrincipalName").as_deref(),
            Some("5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com")
        );
        assert_eq!(one(&dc, &renamed, "sAMAccountName"), Some(sam));
        assert_eq!(one(&dc, &group, "member"), Some(renamed.clone()));
        // The delete: the entry goes (a tombstone), the group is left empty.
        assert_eq!(d.delete(&format!("/Users/{uid}")).await.status, 204);
        assert!(search(&dc, &renamed, "(objectClass=*)", &["1.1"]).is_empty());
        assert_eq!(one(&dc, &group, "member"), None);
    }
}
