from tests.server.admin.conftest import Admin


def test_flow(admin: Admin) -> None:
    b = admin.browser("marketer")
    r = b.get("/admin/promotions")
    assert r.status_code == 200, r.text
    r = b.get("/admin/promotions/new")
    assert r.status_code == 200, r.text
    r = b.post("/admin/promotions", {"name": "Ten off", "start_date": "2026-03-01", "end_date": "2026-03-31",
                                     "ch_POS": "on", "POS_value_type": "PERCENT", "POS_value": "10", "action": "save"})
    assert r.status_code == 303, r.text
    loc = r.headers["location"]
    r = b.get(loc)
    assert r.status_code == 200, r.text
    print(r.text[:3000])
