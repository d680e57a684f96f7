"""The normalizer's remaining gaps (issue 12, part 5): currency signs, negative numbers, long
amounts, lower-case and compound units, fractions, lower-case Roman numerals, informal money and
duration shorthand, vehicle plates, and flags for what it cannot read with confidence.

Each table has the readings that must change and, beside them, the counter-examples that must
not (phone numbers, dates, ranges, list dashes, words that look like Roman numerals)."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest

from broadcaster.textnorm import EmptyTextError, Normalized, Normalizer, Token, normalize


def spoken_key(text: str) -> str:
    """Case- and punctuation-insensitive form, as in test_textnorm_sentences."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def check(cases: list[tuple[str, str]]) -> None:
    for text, expected in cases:
        assert spoken_key(normalize(text)) == spoken_key(expected), text


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer.from_config()


# --- currency signs: read, never dropped

CURRENCIES = [
    ("giá 10€", "giá mười ơ rô"),
    ("5£ một vé", "năm bảng anh một vé"),
    ("30¥", "ba mươi yên"),
    ("1.000 €", "một nghìn ơ rô"),
    ("nợ 200$", "nợ hai trăm đô la"),
    ("$10", "mười đô la"),
    ("€2,5", "hai phẩy năm ơ rô"),
    ("US$1,500", "một nghìn năm trăm đô la mỹ"),
    ("$5 triệu", "năm triệu đô la"),
    ("£1.250.000", "một triệu hai trăm năm mươi nghìn bảng anh"),
    ("50.000 ₭", "năm mươi nghìn kíp"),
    ("giá 20.000₫/kg", "giá hai mươi nghìn đồng một ki lô gam"),
]


def test_currency_signs_are_read_after_the_amount() -> None:
    check(CURRENCIES)


def test_an_unknown_currency_sign_is_flagged_not_dropped(normalizer: Normalizer) -> None:
    for text in ("giá 10₮", "giá ₮10", "₮ là tiền Mông Cổ"):
        result = normalizer.analyze(text)
        flagged = [token for token in result.flags if "₮" in token.original]
        assert flagged, text
        assert "₮" in flagged[0].note and "tiền tệ" in flagged[0].note
    assert "mười" in normalizer.normalize("giá ₮10")  # the amount itself is still read


# --- flags: what the normalizer could not read with confidence


def test_token_and_normalized_keep_working_for_existing_callers(normalizer: Normalizer) -> None:
    token = Token("UBND", "ủy ban nhân dân", True)  # the three-field constructor still works
    assert token.flagged is False and token.note == ""
    result = normalizer.analyze("UBND xã Phúc Hòa họp lúc 7h30")
    assert isinstance(result, Normalized)
    assert result.flags == ()
    assert all(not token.flagged and token.note == "" for token in result.tokens)


@pytest.mark.parametrize(
    ("text", "symbol"),
    [
        ("Điều 5 ® đã đăng ký", "®"),
        ("Sản phẩm ABC™ mới", "™"),
        ("Hàng ※ cần lưu ý", "※"),
        ("Ký hiệu \ue0b7 từ Word", "\ue0b7"),
    ],
)
def test_unknown_symbols_are_flagged(normalizer: Normalizer, text: str, symbol: str) -> None:
    result = normalizer.analyze(text)
    flagged = [token for token in result.flags if symbol in token.original]
    assert len(flagged) == 1
    assert flagged[0].note  # Vietnamese explanation for the officer
    assert flagged[0].spoken == ""  # not read aloud ...
    assert symbol not in result.text  # ... and not handed to the TTS engine either


def test_known_symbols_are_read() -> None:
    check(
        [
            ("theo § 3", "theo mục ba"),
            ("© 2024 UBND xã", "bản quyền hai nghìn không trăm hai mươi tư ủy ban nhân dân xã"),
            ("sai số ±2%", "sai số cộng trừ hai phần trăm"),
            ("cần 1½ kg", "cần một và một phần hai ki lô gam"),
            ("¾ diện tích", "ba phần bốn diện tích"),
            ("10³ m³", "mười mũ ba mét khối"),
        ]
    )


def test_emoji_inside_text_are_flagged_and_not_read(normalizer: Normalizer) -> None:
    result = normalizer.analyze("📢 Thông báo khẩn ⚠️: bão số 3 🌀🌧️ đổ bộ")
    assert result.text == "thông báo khẩn: bão số ba đổ bộ"
    assert [token.original for token in result.flags] == ["📢", "⚠️", "🌀🌧️"]
    assert all("Biểu tượng" in token.note for token in result.flags)
    family = normalizer.analyze("Gia đình 👨‍👩‍👧 văn hóa")
    assert [token.original for token in family.flags] == ["👨‍👩‍👧"]  # one flag for the sequence


def test_emoji_only_text_is_still_an_error(normalizer: Normalizer) -> None:
    with pytest.raises(EmptyTextError):
        normalizer.analyze("🔔🔔 ⚠️")


def test_a_check_mark_bullet_is_a_pause_not_a_flag(normalizer: Normalizer) -> None:
    result = normalizer.analyze("✓ Đã tiêm đủ hai mũi")
    assert result.text == "đã tiêm đủ hai mũi"
    assert result.flags == ()


def test_officer_override_wins_over_the_emoji_flag(normalizer: Normalizer) -> None:
    result = normalizer.with_overrides({"☎": "điện thoại"}).analyze("☎ 0912345678")
    assert result.text.startswith("điện thoại không chín")
    assert result.flags == ()


# Originals that may read as nothing without a flag: list bullets and marks used as decoration,
# and "00" minutes after "giờ" ("7 giờ 00").
_SILENT_OK = frozenset(["✓", "✓✓", "~", "+", "00", "•", "-"])


def test_nothing_visible_is_dropped_silently(normalizer: Normalizer) -> None:
    pool = list("0123456789/.-,:;h%&@ xXivIVđĐaăâbcghkmnoơpqrstuưy\n°²½€$😀\u200b§©®™₮¥£•✓☎※") + [
        "UBND",
        "7h30",
        "15/3/2024",
        "1.250.000",
        "0912 345 678",
        " quý ",
        "iii",
        "1tr5",
        "3p20s",
        "29A-123.45",
        "220v",
        "-3",
        " giờ 00",
        "1000000000",
    ]
    rng = random.Random(20240512)
    checked = 0
    for _ in range(2000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 30)))
        try:
            result = normalizer.analyze(text)
        except EmptyTextError:
            continue
        assert "".join(token.original for token in result.tokens) == text
        for token in result.tokens:
            visible = [
                ch for ch in token.original if ch.isalnum() or unicodedata.category(ch).startswith("S")
            ]
            if visible and not token.spoken.strip() and token.original.strip() not in _SILENT_OK:
                assert token.flagged, (text, token)
            checked += 1
    assert checked > 5000


# --- negative numbers

NEGATIVES = [
    ("Nhiệt độ giảm còn -3.", "nhiệt độ giảm còn âm ba"),
    ("nhiệt độ -1 đến 2 độ", "nhiệt độ âm một đến hai độ"),
    ("có nơi -25°C", "có nơi âm hai mươi lăm độ xê"),
    ("nhiệt độ -3 độ C", "nhiệt độ âm ba độ xê"),
    ("khoảng -3,5 độ", "khoảng âm ba phẩy năm độ"),
    ("chênh lệch -0.5", "chênh lệch âm không phẩy năm"),
    ("tăng trưởng (-2%)", "tăng trưởng âm hai phần trăm"),
    ("Nhiệt độ: -4", "nhiệt độ âm bốn"),
    ("mức −7", "mức âm bảy"),
    ("từ -5 đến -3 độ", "từ âm năm đến âm ba độ"),
    ("-3°C ở vùng núi cao", "âm ba độ xê ở vùng núi cao"),
]
# Dashes that are no minus: ranges, dates, list items, codes, scores.
NOT_NEGATIVES = [
    ("dự kiến thu 5-7 tấn", "dự kiến thu năm đến bảy tấn"),
    ("cắt điện từ 7h-9h", "cắt điện từ bảy giờ đến chín giờ"),
    ("từ 7h30 -11h", "từ bảy giờ ba mươi phút đến mười một giờ"),
    ("ngày 15/3 -20/3", "ngày mười lăm tháng ba đến hai mươi tháng ba"),
    ("từ ngày 10-12/2", "từ ngày mùng mười đến mười hai tháng hai"),
    ("- Thôn 2: 5 hộ", "thôn hai năm hộ"),
    ("-5 hộ nghèo được hỗ trợ", "năm hộ nghèo được hỗ trợ"),
    ("phòng COVID-19", "phòng cô vít mười chín"),
    ("tỷ số 2 -1", "tỷ số hai một"),
    ("đạt 0.5 điểm", "đạt không phẩy năm điểm"),
    ("Cách mạng công nghiệp 4.0", "cách mạng công nghiệp bốn chấm không"),
]


def test_negative_numbers_read_am() -> None:
    check(NEGATIVES)


def test_dashes_that_are_no_minus_keep_their_reading() -> None:
    check(NOT_NEGATIVES)


# --- long numbers: amounts by context, phone and account numbers digit by digit

LONG_AMOUNTS = [
    ("phạt tiền 1000000000đ", "phạt tiền một tỷ đồng"),
    ("tổng số tiền 1000000000 đồng", "tổng số tiền một tỷ đồng"),
    ("mức phạt 2500000000 VNĐ", "mức phạt hai tỷ năm trăm triệu đồng"),
    ("tổng 1500000000", "tổng một tỷ năm trăm triệu"),
    ("kinh phí 12000000000", "kinh phí mười hai tỷ"),
    ("dân số 1200000000 người", "dân số một tỷ hai trăm triệu người"),
    ("vay 3000000000$", "vay ba tỷ đô la"),
]
LONG_DIGITS = [
    ("gọi 0912345678", "gọi không chín một hai ba bốn năm sáu bảy tám"),
    ("SĐT 0912345678", "số điện thoại không chín một hai ba bốn năm sáu bảy tám"),
    ("hotline +84 912 345 678", "hotline cộng tám bốn chín một hai ba bốn năm sáu bảy tám"),
    ("tổng đài 19001234", "tổng đài một chín không không một hai ba bốn"),
    ("gọi 0912345678 hoặc 113", "gọi không chín một hai ba bốn năm sáu bảy tám hoặc một một ba"),
    ("báo cháy 114, cấp cứu 115", "báo cháy một một bốn, cấp cứu một một năm"),
    ("số tài khoản 1234567890123", "số tài khoản một hai ba bốn năm sáu bảy tám chín không một hai ba"),
    ("mã số thuế 3600252847", "mã số thuế ba sáu không không hai năm hai tám bốn bảy"),
    ("CCCD 001234567890", "căn cước công dân không không một hai ba bốn năm sáu bảy tám chín không"),
    ("điện thoại 0243826123", "điện thoại không hai bốn ba tám hai sáu một hai ba"),
]


def test_long_numbers_are_amounts_in_money_context() -> None:
    check(LONG_AMOUNTS)


def test_phone_account_and_id_numbers_stay_digit_by_digit() -> None:
    check(LONG_DIGITS)


def test_a_long_bare_number_is_read_digit_by_digit_and_flagged(normalizer: Normalizer) -> None:
    result = normalizer.analyze("Số 1234567890 đã được ghi nhận")
    assert "một hai ba bốn năm sáu bảy tám chín không" in result.text
    [flag] = result.flags
    assert flag.original == "1234567890" and "1.000.000.000" in flag.note
    assert normalizer.analyze("gọi 0912345678").flags == ()  # a phone number is no doubt


# --- units

UNITS = [
    ("cắt điện 220v", "cắt điện hai trăm hai mươi vôn"),
    ("điện áp 220 V", "điện áp hai trăm hai mươi vôn"),
    ("tần số 50hz", "tần số năm mươi héc"),
    ("chip 2ghz", "chip hai gi ga héc"),
    ("máy phát 1kw", "máy phát một ki lô oát"),
    ("bóng đèn 100w", "bóng đèn một trăm oát"),
    ("dòng 500mA", "dòng năm trăm mi li am pe"),
    ("pin 5000mAh", "pin năm nghìn mi li am pe giờ"),
    ("tệp 64kb", "tệp sáu mươi tư ki lô bai"),
    ("gói 2gb", "gói hai gi ga bai"),
    ("ổ cứng 2TB", "ổ cứng hai tê ra bai"),
    ("tốc độ 100Mbps", "tốc độ một trăm mê ga bít trên giây"),
    ("thể tích 20cm³", "thể tích hai mươi xăng ti mét khối"),
    ("tốc độ 5 m/min", "tốc độ năm mét trên phút"),
    ("dòng chảy 3 cm/s", "dòng chảy ba xăng ti mét trên giây"),
    ("nồng độ 5 mg/ml", "nồng độ năm mi li gam trên mi li lít"),
    ("bụi mịn 50 µg/m³", "bụi mịn năm mươi mi crô gam trên mét khối"),
    ("ti vi 55 inch", "ti vi năm mươi lăm inh"),
    ("máy cày 10 hp", "máy cày mười mã lực"),
    ("xe máy 110cc", "xe máy một trăm mười phân khối"),
    ("điện trở 10Ω", "điện trở mười ôm"),
]
NOT_UNITS = [
    ("đường dài 5m", "đường dài năm mét"),  # m is metres
    ("gói 5M", "gói năm mờ"),  # M alone is no unit: spelled
    ("lớp 10A", "lớp mười a"),  # a class, not ampere
    ("TB số 5", "thông báo số năm"),  # TB is a unit only after a number
    ("ma túy", "ma túy"),
    ("lúc 10 h", "lúc mười giờ"),
    ("lúc 2h30p", "lúc hai giờ ba mươi phút"),
]


def test_lower_case_and_compound_units() -> None:
    check(UNITS)


def test_unit_look_alikes_keep_their_reading() -> None:
    check(NOT_UNITS)


# --- fractions outside date contexts

FRACTIONS = [
    ("diện tích 23 1/5 ha", "diện tích hai mươi ba và một phần năm héc ta"),
    ("23 1/5", "hai mươi ba và một phần năm"),
    ("thu 5 1/2 tấn lúa", "thu năm và một phần hai tấn lúa"),
    ("cần 1/2kg đường", "cần một phần hai ki lô gam đường"),
    ("vải 3/4m", "vải ba phần bốn mét"),
    ("1/4 lít dầu", "một phần bốn lít dầu"),
    ("cần 2/3 ha", "cần hai phần ba héc ta"),
]
DATES = [
    ("ngày 1/5", "ngày mùng một tháng năm"),
    ("từ 15/3", "từ mười lăm tháng ba"),
    ("hạn 1/5/2024", "hạn mùng một tháng năm năm hai nghìn không trăm hai mươi tư"),
    ("nghỉ lễ 30/4 và 1/5", "nghỉ lễ ba mươi tháng tư và mùng một tháng năm"),
    ("ngày 1/5 tấn công", "ngày mùng một tháng năm tấn công"),
    ("lúc 10 1/2", "lúc mười mùng một tháng hai"),  # after "lúc" no mixed number is guessed
    ("sáng 15/3", "sáng mười lăm tháng ba"),
]


def test_fractions_outside_date_contexts() -> None:
    check(FRACTIONS)


def test_dates_stay_dates() -> None:
    check(DATES)


# --- Roman numerals

ROMANS = [
    ("Phần II: Nội dung", "phần hai nội dung"),
    ("Phụ lục III kèm theo", "phụ lục ba kèm theo"),
    ("phụ lục ii", "phụ lục hai"),
    ("chương iv", "chương bốn"),
    ("quý iii năm 2024", "quý ba năm hai nghìn không trăm hai mươi tư"),
    ("quý i và quý ii", "quý một và quý hai"),
    ("Khoản II Điều I", "khoản hai điều một"),
    ("Mục IV", "mục bốn"),
    ("Đoạn V", "đoạn năm"),
    ("lần thứ IV", "lần thứ tư"),
    ("thứ iv", "thứ tư"),
    ("thế kỷ xxi", "thế kỷ hai mươi mốt"),
    ("khóa xv", "khóa mười lăm"),
    ("kỳ ii/2024", "kỳ hai năm hai nghìn không trăm hai mươi tư"),
    ("chương vi.", "chương sáu"),
]
NOT_ROMANS = [
    ("các lần vi phạm", "các lần vi phạm"),
    ("điều vi phạm", "điều vi phạm"),
    ("khoản vi phạm hành chính", "khoản vi phạm hành chính"),
    ("phần xi măng", "phần xi măng"),
    ("số vi rút", "số vi rút"),
    ("vi khuẩn và xi nhan", "vi khuẩn và xi nhan"),
    ("li nước, mi, di dời", "li nước, mi, di dời"),
    ("thế vi", "thế vi"),  # "vi" after a word that is no section word
]


def test_roman_numerals_in_context_any_case() -> None:
    check(ROMANS)


def test_words_that_look_like_roman_numerals_stay_words() -> None:
    check(NOT_ROMANS)


# --- informal money and duration shorthand

SHORTHAND = [
    ("giá thuê 1tr5/tháng", "giá thuê một triệu năm trăm nghìn một tháng"),
    ("lương 1tr", "lương một triệu"),
    ("giá 500k một suất", "giá năm trăm nghìn một suất"),
    ("hỗ trợ 2t3 mỗi hộ", "hỗ trợ hai triệu ba trăm nghìn mỗi hộ"),
    ("1tr25", "một triệu hai trăm năm mươi nghìn"),
    ("2tr050", "hai triệu không trăm năm mươi nghìn"),
    ("bán 1ty2", "bán một tỷ hai trăm triệu"),
    ("vé 5k5", "vé năm nghìn năm trăm"),
    ("thời gian 3p20s", "thời gian ba phút hai mươi giây"),
    ("kỷ lục 1h30p20s", "kỷ lục một giờ ba mươi phút hai mươi giây"),
    ("lúc 2h30p chiều", "lúc hai giờ ba mươi phút chiều"),
    ("nghỉ 15p", "nghỉ mười lăm phút"),
]
NOT_SHORTHAND = [
    ("tổ 2t3 họp", "tổ hai tê ba họp"),  # no money around: "t" is no million
]


def test_informal_money_and_duration_shorthand() -> None:
    check(SHORTHAND)
    check(NOT_SHORTHAND)


# --- vehicle plates

PLATES = [
    ("xe 98B1-234.56", "xe chín tám bê một, hai ba bốn chấm năm sáu"),
    ("biển số 29A-123.45", "biển số hai chín a, một hai ba chấm bốn năm"),
    ("xe 51F-999.99.", "xe năm một ép, chín chín chín chấm chín chín"),
    ("xe 30A-1234", "xe ba không a, một hai ba bốn"),
    ("xe máy 29X1 234.56", "xe máy hai chín ích một, hai ba bốn chấm năm sáu"),
    ("xe 29LD-12345", "xe hai chín lờ dê, một hai ba bốn năm"),
    ("xe 43Đ-111.22", "xe bốn ba đê, một một một chấm hai hai"),
]


def test_vehicle_plates_read_as_plates_not_ranges() -> None:
    check(PLATES)
    assert "đến" not in normalize("xe 98B1-234.56 và 29A-123.45")


# --- the real sentences, end to end


def test_commune_announcements() -> None:
    check(
        [
            (
                "Thông báo cắt điện 220v từ 7h30-11h ngày 15/3",
                "thông báo cắt điện hai trăm hai mươi vôn từ bảy giờ ba mươi phút đến mười một giờ "
                "ngày mười lăm tháng ba",
            ),
            (
                "Phạt tiền 1000000000đ đối với hành vi vi phạm",
                "phạt tiền một tỷ đồng đối với hành vi vi phạm",
            ),
            ("Nhiệt độ -3 độ C", "nhiệt độ âm ba độ xê"),
            ("Phụ lục II", "phụ lục hai"),
            ("giá 1tr5/tháng", "giá một triệu năm trăm nghìn một tháng"),
        ]
    )
