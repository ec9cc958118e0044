def test_smoke(staff):
    r = staff.get("/contacts")
    print(r.text[-800:])
    f = staff.get("/accounts/new").forms["record-form"]
    f["name"] = "Acme"
    r = f.submit().follow()
    print(r.text[-2500:])
    r = staff.get("/contacts/new")
    f = r.forms["record-form"]
    f["first_name"] = "Ada"; f["last_name"] = "<b>L</b>"; f["account"] = "1"
    r = f.submit().follow()
    r = staff.get("/contacts?q=acm")
    print(r.text[-1200:])
