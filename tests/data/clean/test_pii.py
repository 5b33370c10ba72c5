import pytest

from lmstack.data.clean.pii import find, luhn_ok, scrub

FOUND = [
    ("Write to john.doe+news@example.co.uk today.", "email", "john.doe+news@example.co.uk"),
    ("邮箱zhangwei_88@163.com，欢迎来信。", "email", "zhangwei_88@163.com"),
    ("Call +1 (202) 555-0143 now.", "phone", "+1 (202) 555-0143"),
    ("Ring +44 20 7946 0958 or later.", "phone", "+44 20 7946 0958"),
    ("Phone: +49 30 90182034.", "phone", "+49 30 90182034"),
    ("US office (202) 555-0143.", "phone", "(202) 555-0143"),
    ("US office 202-555-0143.", "phone", "202-555-0143"),
    ("US office 202.555.0143.", "phone", "202.555.0143"),
    ("我的手机号是13812345678，有事请联系。", "phone", "13812345678"),
    ("手机138-1234-5678", "phone", "138-1234-5678"),
    ("手机 138 1234 5678。", "phone", "138 1234 5678"),
    ("电话+86 138 1234 5678", "phone", "+86 138 1234 5678"),
    ("座机010-62345678。", "phone", "010-62345678"),
    ("身份证号码：11010519491231002X。", "cn_id", "11010519491231002X"),
    ("Card 4111 1111 1111 1111 expires 08/27.", "card", "4111 1111 1111 1111"),
    ("Card 5500-0000-0000-0004.", "card", "5500-0000-0000-0004"),
    ("Amex 3782 822463 10005 ok", "card", "3782 822463 10005"),
    ("银行卡号6222021234567890128已绑定。", "card", "6222021234567890128"),
    ("Visa card number: 5468468562136070 on file.", "card", "5468468562136070"),
    ("Server 192.168.1.10 is down.", "ipv4", "192.168.1.10"),
    ("服务器地址为10.0.0.1。", "ipv4", "10.0.0.1"),
    ("Host fe80::1ff:fe23:4567:890a is up.", "ipv6", "fe80::1ff:fe23:4567:890a"),
    ("Host 2001:db8:85a3:0:0:8a2e:370:7334.", "ipv6", "2001:db8:85a3:0:0:8a2e:370:7334"),
    ("Use sk-proj-abcdefghijklmnopqrstuvwxyz123456 here", "secret", "sk-proj-abcdefghijklmnopqrstuvwxyz123456"),
    ("AWS AKIAIOSFODNN7EXAMPLE key", "secret", "AKIAIOSFODNN7EXAMPLE"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 leaked", "secret", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("password = hunter22x", "secret", "hunter22x"),
    ('api_key: "AbCdEf1234567890"', "secret", "AbCdEf1234567890"),
    ("密钥是xoxb-123456789012-abcdefghijklmnopqrstuvwx，请勿外泄。", "secret",
     "xoxb-123456789012-abcdefghijklmnopqrstuvwx"),
]


@pytest.mark.parametrize("text,kind,value", FOUND)
def test_finds_each_kind(text, kind, value):
    spans = find(text)
    assert [(s.kind, text[s.start : s.end]) for s in spans] == [(kind, value)]
    assert scrub(text)[0] == text.replace(value, f"<{kind.upper()}>")


def _with_check_digit(body: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights)) % 11]


def test_identity_numbers_need_a_valid_check_digit_and_date():
    good = _with_check_digit("44030519900101123")
    assert [(s.kind, s.start) for s in find(f"号码{good}。")] == [("cn_id", 2)]
    wrong = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert not any(s.kind == "cn_id" for s in find(f"号码{wrong}。"))
    feb30 = _with_check_digit("44030519900230123")
    assert not any(s.kind == "cn_id" for s in find(f"号码{feb30}。"))


def test_cards_need_luhn_prefix_and_grouping():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert find("Card 4111 1111 1111 1112.") == []
    assert find("ISBN 978-3-16-148410-0 and 9783161484100") == []  # Luhn-valid or not, not a card
    assert find("Code 4111-11111111-1111") == []  # not a card grouping


PII_FREE = [
    "On 2024-03-15 at 14:30:00 the job finished; see 15/03/2024 and 15.03.2024.",
    "We shipped v2.4.6, version 10.0.19041.1 and Python 3.11.7 (build 1.2.3.4) last week.",
    "Revenue grew 12.5% to $1,234,567.89; the population is 1,402,000,000.",
    "Order #20240315-0042 weighed 12.75 kg; pi is 3.14159 and e is 2.71828.",
    "ISBN 978-0-306-40615-7 on page 123-145; the score was 3:2 at 12:30:45.",
    "Invoice 12345678 of 123456789012 units and serial 1234567890123456 were archived.",
    "Matthew 5:3 and std::vector<int> and A::B and 00:1a:2b:3c:4d:5e are not addresses.",
    "2024年3月15日，全市GDP增长5.2%，人口2189万，编号2023001234，邮编100084。",
    "The secret: ingredients matter; the password is long gone.",
    "Serial 5468468562136071 shipped with order 4111111111111112.",  # issuer prefixes, but Luhn-invalid
    "Order 9111111111111111 and tracking 1234567812345670 arrived.",  # Luhn-valid, but no issuer prefix
    "Coordinates 48.8566, 2.3522 and ratio 16:9 at 7:45 pm; call 1-2-3.",
]


@pytest.mark.parametrize("text", PII_FREE)
def test_no_false_positives_on_ordinary_numbers(text):
    assert find(text) == []
    assert scrub(text) == (text, {})


def test_scrub_counts_kinds_and_overlaps_go_to_the_first_kind():
    text = "Mail 13812345678@qq.com or call 13812345678, server 10.0.0.1."
    out, counts = scrub(text)
    assert out == "Mail <EMAIL> or call <PHONE>, server <IPV4>."
    assert counts == {"email": 1, "phone": 1, "ipv4": 1}
    assert scrub(text, ["phone"])[0] == "Mail <PHONE>@qq.com or call <PHONE>, server 10.0.0.1."


def _luhn(body: str) -> str:
    """``body`` plus the digit that makes it pass the Luhn check."""
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


# Unbroken runs with no card word nearby: an issuer's exact prefix and length plus the Luhn digit is a card.
UNBROKEN_CARDS = [_luhn("4" + "01234567890123"), _luhn("5" + "1" + "2" * 13), _luhn("5" + "5" * 14),
                  _luhn("2221" + "0" * 11), _luhn("2720" + "9" * 11), _luhn("34" + "1" * 12), _luhn("37" + "2" * 12),
                  _luhn("6011" + "3" * 11), _luhn("65" + "4" * 13), _luhn("62" + "5" * 13), _luhn("62" + "7" * 16),
                  _luhn("3528" + "6" * 11), _luhn("3589" + "8" * 11)]


@pytest.mark.parametrize("number", UNBROKEN_CARDS)
def test_unbroken_issuer_runs_are_cards_without_a_card_word(number):
    for text in (f"Order ref {number} shipped.", f"订单{number}已发货。", number):
        spans = find(text)
        assert [(s.kind, text[s.start : s.end]) for s in spans] == [("card", number)], text
        assert scrub(text)[0] == text.replace(number, "<CARD>")


NEAR_MISSES = [
    _luhn("4" + "1" * 14)[:-1] + str((int(_luhn("4" + "1" * 14)[-1]) + 1) % 10),  # Visa prefix, Luhn-invalid
    _luhn("9" + "1" * 14),  # Luhn-valid, no issuer starts with 9
    _luhn("1" + "2" * 14),  # ... nor with 1
    _luhn("56" + "0" * 13),  # 56 is not MasterCard (51-55)
    _luhn("2720" + "9" * 10),  # MasterCard prefix, 15 digits
    _luhn("34" + "1" * 13),  # Amex prefix, 16 digits
    _luhn("4" + "3" * 13),  # Visa prefix, 15 digits
    _luhn("4" + "3" * 17),  # Visa prefix, 19 digits
    _luhn("3590" + "1" * 11),  # past JCB's 3528-3589
    "9787111213829",  # an ISBN-13 without hyphens
]


@pytest.mark.parametrize("number", NEAR_MISSES)
def test_unbroken_runs_without_issuer_length_and_luhn_stay(number):
    assert find(f"Order ref {number} shipped.") == []
    assert find(f"编号{number}已归档。") == []


def test_unbroken_runs_touching_letters_stay_but_a_card_word_still_finds_them():
    number = _luhn("4" + "2" * 14)
    assert find(f"part SN{number} and {number}x") == []
    text = f"credit card {number}x"
    assert [(s.kind, text[s.start : s.end]) for s in find(text)] == [("card", number)]
    order = _luhn("20240315000123456")  # 18 digits, Luhn-valid: a date-led order number, not a card length
    assert [s.kind for s in find(f"手机13812345678，订单号{order}。")] == ["phone"]
