use super::*;

const TTL: std::time::Duration = std::time::Duration::from_secs(3600);
use herald::gateway::RecordingGateway;
use herald::store::memory::MemoryStore;

async fn connect(store: &MemoryStore, id: &str, sid: &str, admin: bool, request_id: Option<&str>) {
    let c = Connection { admin, request_id: request_id.map(str::to_string), ..Connection::opened(id, sid, Api::Chat, TTL) };
    store.put_connection(&c).await.unwrap();
}

/// Requester sid 1 (request_id 100) on `req`, admin sid 2 on `admin`; conversation 100 of user 1.
async fn setup() -> (MemoryStore, RecordingGateway) {
    let store = MemoryStore::new();
    connect(&store, "req", "1", false, Some("100")).await;
    connect(&store, "admin", "2", true, None).await;
    store.create_conversation(&json!(100), "1", "2020-03-05T18:11:50Z").await.unwrap();
    store.add_member("100", "1").await.unwrap();
    (store, RecordingGateway::default())
}

async fn call(store: &MemoryStore, gw: &RecordingGateway, connection_id: &str, frame: Value) -> Value {
    let mut e = WsEvent::default();
    e.request_context.connection_id = Some(connection_id.into());
    e.body = Some(frame.to_string());
    let r = handle(store, gw, e).await.unwrap();
    serde_json::from_slice(apigw::response_body(&r).unwrap()).unwrap()
}

fn frame(name: &str, args: Value) -> Value {
    json!({"name": name, "args": args.to_string()})
}

fn pushed(gw: &RecordingGateway, connection_id: &str) -> Vec<Value> {
    gw.sent_to(connection_id)
        .into_iter()
        .map(|f| match f {
            Frame::Text(t) => serde_json::from_str(&t).unwrap(),
            Frame::Binary(_) => panic!("binary push"),
        })
        .collect()
}

#[tokio::test]
async fn seed_send_list_read_with_the_seed_shapes() {
    let (store, gw) = setup().await;
    let r =
        call(&store, &gw, "req", frame("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":"Hello World"}))).await;
    assert_eq!((r["name"].clone(), r["ok"].clone()), (json!("Event.SendMessage"), json!(true)));
    let m = &r["result"]["message"];
    assert_eq!(m["id"], 1);
    assert_eq!(m["session_channel"], "100");
    assert_eq!(m["content"], "Hello World");
    assert_eq!(m["content_type"], 1);
    assert_eq!(m["sender_id"], 1);
    assert_eq!(m["status"], 0);
    assert!(m["create_at"].is_string() && m["update_at"].is_string());
    assert_eq!(m.as_object().unwrap().len(), 8);
    // No admin has joined yet: nobody else to push to.
    assert!(gw.sent().is_empty());

    let list = call(&store, &gw, "admin", frame("Event.GetMessageList", json!({"session_channel":"100","executor_id":2}))).await;
    assert_eq!(list["result"], json!({"Messages": [m.clone()]}));
    assert_eq!(store.channel_members("100").await.unwrap(), vec!["1".to_string(), "2".to_string()]);

    let r = call(
        &store,
        &gw,
        "req",
        frame("Event.SendMessage", json!({"session_channel":"100","sender_id":"1","content":"img","content_type":2})),
    )
    .await;
    assert_eq!(r["result"]["message"]["content_type"], 2);
    let push = pushed(&gw, "admin");
    assert_eq!(push, vec![json!({"name":"Event.ReceiveMessage","ok":true,"result":{"message": r["result"]["message"].clone()}})]);
    assert!(pushed(&gw, "req").is_empty());

    let unread = call(&store, &gw, "admin", frame("Event.GetUnreadInfo", json!({"executor_id":2}))).await;
    assert_eq!(unread["result"], json!({"total":2,"channels":[{"session_channel":"100","count":2}]}));
    let r = call(&store, &gw, "admin", frame("Event.ReadMessage", json!({"session_channel":"100","executor_id":2,"message_id":2}))).await;
    assert_eq!(r, json!({"name":"Event.ReadMessage","ok":true,"result":null}));
    assert_eq!(store.get_message("100", 2).await.unwrap().unwrap().status, 1);
    let unread = call(&store, &gw, "admin", frame("Event.GetUnreadInfo", json!({"executor_id":2}))).await;
    assert_eq!(unread["result"], json!({"total":1,"channels":[{"session_channel":"100","count":1}]}));
    let unread = call(&store, &gw, "req", frame("Event.GetUnreadInfo", json!({"executor_id":1}))).await;
    assert_eq!(unread["result"], json!({"total":0,"channels":[]}));

    // The admin answers: the requester's connection receives it.
    let r = call(
        &store,
        &gw,
        "admin",
        frame("Event.SendMessage", json!({"session_channel":"100","sender_id":2,"content":"Hey","content_type":"x"})),
    )
    .await;
    assert_eq!((r["result"]["message"]["id"].clone(), r["result"]["message"]["content_type"].clone()), (json!(3), json!(1)));
    let push = pushed(&gw, "req");
    assert_eq!(push.len(), 1);
    assert_eq!(push[0]["result"]["message"]["sender_id"], 2);
    let unread = call(&store, &gw, "req", frame("Event.GetUnreadInfo", json!({"executor_id":1}))).await;
    assert_eq!(unread["result"], json!({"total":1,"channels":[{"session_channel":"100","count":1}]}));
    // Reading one's own message changes nothing.
    call(&store, &gw, "req", frame("Event.ReadMessage", json!({"session_channel":"100","executor_id":1,"message_id":1}))).await;
    assert_eq!(store.get_message("100", 1).await.unwrap().unwrap().status, 0);
}

#[tokio::test]
async fn client_msg_id_is_idempotent_and_not_pushed_twice() {
    let (store, gw) = setup().await;
    store.add_member("100", "2").await.unwrap();
    let send = frame("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":"once","client_msg_id":"k1"}));
    let a = call(&store, &gw, "req", send.clone()).await;
    let b = call(&store, &gw, "req", send).await;
    assert_eq!(a, b);
    assert_eq!(pushed(&gw, "admin").len(), 1);
    assert_eq!(store.list_messages("100", None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn gone_connections_are_deleted_and_paging_works() {
    let (store, gw) = setup().await;
    connect(&store, "admin-2", "2", true, None).await;
    store.add_member("100", "2").await.unwrap();
    gw.mark_gone("admin");
    for i in 1..=5 {
        let r =
            call(&store, &gw, "req", frame("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":format!("m{i}")})))
                .await;
        assert_eq!(r["result"]["message"]["id"], i);
    }
    assert_eq!(pushed(&gw, "admin-2").len(), 5);
    assert!(store.get_connection("admin").await.unwrap().is_none(), "the gone connection is deleted");
    assert!(store.get_connection("admin-2").await.unwrap().is_some());
    let ids = |v: &Value| v["result"]["Messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect::<Vec<_>>();
    let page = call(&store, &gw, "req", frame("Event.GetMessageList", json!({"session_channel":"100","executor_id":1,"limit":2}))).await;
    assert_eq!(ids(&page), vec![4, 5]);
    let page =
        call(&store, &gw, "req", frame("Event.GetMessageList", json!({"session_channel":"100","executor_id":1,"limit":2,"before_id":4})))
            .await;
    assert_eq!(ids(&page), vec![2, 3]);
    let all = call(&store, &gw, "req", frame("Event.GetMessageList", json!({"session_channel":"100","executor_id":1}))).await;
    assert_eq!(ids(&all), vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn refusals_and_bad_args_answer_ok_false() {
    let (store, gw) = setup().await;
    connect(&store, "other", "9", false, Some("200")).await;
    store.create_conversation(&json!(200), "9", "2020-03-05T18:11:50Z").await.unwrap();
    let cases = [
        ("req", frame("Event.SendMessage", json!({"session_channel":"100","sender_id":2,"content":"x"})), "sid"),
        ("req", frame("Event.SendMessage", json!({"session_channel":"200","sender_id":1,"content":"x"})), "not this requester's"),
        ("other", frame("Event.GetMessageList", json!({"session_channel":"100","executor_id":9})), "not this requester's"),
        ("req", frame("Event.GetMessageList", json!({"session_channel":"100","executor_id":2})), "sid"),
        ("req", frame("Event.ReadMessage", json!({"session_channel":"100","executor_id":1,"message_id":"1"})), "integer"),
        ("req", frame("Event.ReadMessage", json!({"session_channel":"100","executor_id":1,"message_id":42})), "no message"),
        ("req", frame("Event.GetUnreadInfo", json!({"executor_id":7})), "sid"),
        ("admin", frame("Event.SendMessage", json!({"session_channel":"404","sender_id":2,"content":"x"})), "no conversation"),
        ("req", frame("Event.SendMessage", json!({"session_channel":"100","sender_id":1})), "required"),
        ("req", frame("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":5})), "string"),
        ("req", frame("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":""})), "empty"),
        ("req", frame("Event.SendMessage", json!({"session_channel":["100"],"sender_id":1,"content":"x"})), "session_channel"),
        ("req", frame("Event.GetMessageList", json!({"session_channel":"100","executor_id":1,"limit":5000})), "limit"),
        ("req", json!({"name":"Event.SendMessage","args":"not json"}), "args"),
        ("req", json!({"name":"Event.SendMessage","args":[1]}), "args"),
        ("req", frame("Event.AddConversation", json!({})), "unknown event"),
    ];
    for (connection, f, text) in cases {
        let r = call(&store, &gw, connection, f.clone()).await;
        assert_eq!(r["ok"], false, "{f}");
        assert!(r["error"].as_str().unwrap().contains(text), "{f}: {r}");
    }
    assert!(store.list_messages("100", None, 10).await.unwrap().is_empty());
    assert!(store.list_messages("200", None, 10).await.unwrap().is_empty());
    assert!(gw.sent().is_empty());
}

/// The attack of issue 9: a requester of application 200 connects with the operator's sid (2)
/// and must not receive application 100's messages, whatever sid it chose.
#[tokio::test]
async fn a_requester_with_an_operators_sid_never_receives_another_applications_messages() {
    let (store, gw) = setup().await;
    connect(&store, "intruder", "2", false, Some("200")).await;
    // The operator joins channel 100 by listing it, so sid 2 is a participant there.
    call(&store, &gw, "admin", frame("Event.GetMessageList", json!({"session_channel":"100","executor_id":2}))).await;
    let r = call(&store, &gw, "req", frame("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":"secret"}))).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(pushed(&gw, "admin").len(), 1, "the operator gets the message");
    assert!(pushed(&gw, "intruder").is_empty(), "the other application's requester gets nothing: {:?}", pushed(&gw, "intruder"));
}

/// Inside its own conversation a requester acts only as the conversation's user: a connection
/// of application 100 that chose the operator's sid can neither send, read, list nor count as it.
#[tokio::test]
async fn a_requester_acts_only_as_its_conversations_user() {
    let (store, gw) = setup().await;
    connect(&store, "impostor", "2", false, Some("100")).await;
    call(&store, &gw, "req", frame("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":"hi"}))).await;
    let frames = [
        frame("Event.SendMessage", json!({"session_channel":"100","sender_id":2,"content":"as the operator"})),
        frame("Event.ReadMessage", json!({"session_channel":"100","executor_id":2,"message_id":1})),
        frame("Event.GetMessageList", json!({"session_channel":"100","executor_id":2})),
    ];
    for f in frames {
        let r = call(&store, &gw, "impostor", f.clone()).await;
        assert_eq!(r["ok"], false, "{f} -> {r}");
        assert!(r["error"].as_str().unwrap().contains("not the user of conversation 100"), "{r}");
    }
    let unread = call(&store, &gw, "impostor", frame("Event.GetUnreadInfo", json!({"executor_id":2}))).await;
    assert_eq!(unread["result"], json!({"total":0,"channels":[]}));
    // Nothing was marked read or sent as the operator.
    assert_eq!(store.get_message("100", 1).await.unwrap().unwrap().status, 0);
    assert_eq!(store.list_messages("100", None, 10).await.unwrap().len(), 1);
    assert!(!store.channel_members("100").await.unwrap().contains(&"2".to_string()));
}
