"""Build the hand-labelled PII evaluation corpus for the Presidio-based scanner.

Every sentence below was written by hand. Entities are marked inline as
``⟦LABEL|value⟧`` (``LABEL`` is one of the short aliases in ``ALIASES``); this script
strips the markers, computes character offsets, validates every value (Luhn for
cards, ISO 13616 mod-97 for IBANs, issuance rules for SSNs, ...), checks that no
obviously detectable PII was left unlabelled, enforces the minimum counts, and writes
``pii_corpus.jsonl`` and ``canary_values.json`` next to this file.

Standard library only and fully deterministic: running it twice yields identical
bytes. Any failed check aborts with a non-zero exit status and writes nothing.

    .venv/bin/python models/pii/data/build_corpus.py          # rebuild
    .venv/bin/python models/pii/data/build_corpus.py --check  # verify files are current
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS_PATH = HERE / "pii_corpus.jsonl"
CANARY_PATH = HERE / "canary_values.json"

ALIASES: dict[str, str] = {
    "P": "PERSON",
    "E": "EMAIL_ADDRESS",
    "PH": "PHONE_NUMBER",
    "CC": "CREDIT_CARD",
    "SSN": "US_SSN",
    "IBAN": "IBAN_CODE",
    "IP": "IP_ADDRESS",
    "LOC": "LOCATION",
    "EMP": "EMPLOYEE_ID",
}
LABELS: tuple[str, ...] = tuple(ALIASES.values())

MIN_COUNTS: dict[str, int] = {
    "EMAIL_ADDRESS": 25,
    "PHONE_NUMBER": 25,
    "CREDIT_CARD": 25,
    "US_SSN": 25,
    "IP_ADDRESS": 25,
    "PERSON": 25,
    "IBAN_CODE": 12,
    "LOCATION": 12,
    "EMPLOYEE_ID": 12,
}
MIN_SENTENCES = 160
MIN_NEGATIVES = 30
MIN_MULTI_ENTITY = 40  # sentences with spans of at least two different labels
MIN_UNIQUE_RATIO = 0.75  # distinct values / spans, per label

MARK = re.compile(r"⟦([A-Z]+)\|([^⟦⟧|]+)⟧")


@dataclass(frozen=True)
class Entry:
    """One hand-written sentence: a note and its marked-up text."""

    note: str
    marked: str
    # Substrings a regex would flag that are deliberately left unlabelled (not PII here).
    allow: tuple[str, ...] = field(default_factory=tuple)


def e(note: str, marked: str, *allow: str) -> Entry:
    return Entry(note=note, marked=marked, allow=allow)


# ---------------------------------------------------------------------------------------
# The corpus. Notes: a category tag for positives; "negative: ..." for hard negatives
# (no spans, or fewer spans than a naive pattern scanner would report).
# ---------------------------------------------------------------------------------------
ENTRIES: list[Entry] = [
    # --- IT tickets ----------------------------------------------------------------------
    e(
        "it-ticket",
        "Hi, my laptop can't reach the VPN gateway at ⟦IP|10.42.8.17⟧ since this morning. "
        "I'm ⟦P|Amara Okafor⟧, ⟦EMP|EMP-204817⟧.",
    ),
    e(
        "it-ticket",
        "Ticket for ⟦P|Wei Zhang⟧: reset MFA on his new phone, callback number "
        "⟦PH|(415) 555-0137⟧.",
    ),
    e(
        "it-ticket",
        "Please allowlist ⟦IP|203.0.113.54⟧ on the ⟦LOC|Lisbon⟧ office firewall. Requested by "
        "⟦E|d.volkov@ops.northwind-analytics.com⟧.",
    ),
    e(
        "it-ticket; terse",
        "ssh into ⟦IP|172.16.4.201⟧ fails with 'Permission denied (publickey)' - can someone "
        "from infra look? thx",
    ),
    e(
        "it-ticket; lowercase",
        "printer on floor 3 has ip ⟦IP|192.168.30.45⟧ now, the old one was ⟦IP|192.168.30.12⟧",
    ),
    e(
        "it-ticket; ipv6",
        "Our monitoring flagged repeated logins from ⟦IP|2001:db8:4f2a::17⟧ to the shared "
        "mailbox ⟦E|helpdesk@it.northwind-analytics.com⟧.",
    ),
    e(
        "it-ticket",
        "New starter ⟦P|Mateus Costa⟧ (⟦EMP|EMP-118430⟧) needs a laptop shipped to the "
        "⟦LOC|São Paulo⟧ office by Monday.",
    ),
    e(
        "it-ticket; casual",
        "can u reset the password for ⟦E|kwame.mensah@northwind-analytics.com⟧? he's locked "
        "out, his cell is ⟦PH|415-555-0199⟧",
    ),
    e(
        "it-ticket",
        "The DHCP lease for ⟦IP|10.0.12.88⟧ keeps expiring on ⟦P|Priya Raghunathan⟧'s docking "
        "station.",
    ),
    e(
        "it-ticket",
        "Firewall rule request: allow TCP 443 from ⟦IP|198.51.100.23⟧ to ⟦IP|10.20.0.5⟧. "
        "Owner: ⟦EMP|EMP-390265⟧.",
    ),
    e(
        "it-ticket; uppercase email",
        "⟦E|Lan.Nguyen@VN.Northwind-Analytics.com⟧ can't open SharePoint from the "
        "⟦LOC|Hanoi⟧ office; her IP shows as ⟦IP|113.161.72.9⟧.",
    ),
    e(
        "it-ticket",
        "Outlook keeps asking for creds. user: ⟦E|tomasz.kowalski@northwind-analytics.com⟧, "
        "ext 4471, desk phone ⟦PH|(312) 555-0104⟧.",
    ),
    e(
        "it-ticket",
        "Hardware request - second monitor for ⟦P|Zanele Dlamini⟧, ⟦EMP|EMP-287764⟧, ship to "
        "⟦LOC|Cape Town⟧.",
    ),
    e(
        "it-ticket; exclamations",
        "IP conflict!! both my pc and the meeting room tv say ⟦IP|192.168.4.77⟧",
    ),
    e(
        "it-ticket; uk phone",
        "Reset my Okta factor please. Name: ⟦P|Björn Eriksson⟧ / Phone: ⟦PH|+44 113 496 0874⟧",
    ),
    e(
        "it-ticket",
        "vpn drops every 10 min. client log says peer ⟦IP|84.17.45.201⟧ unreachable. "
        "- ⟦P|Yuki Sato⟧",
    ),
    e(
        "it-ticket",
        "Please add ⟦E|marcus.whitfield@partners.bluepeak.io⟧ as a guest to the #data-eng "
        "channel until Friday.",
    ),
    e(
        "it-ticket; first name only",
        "⟦P|Dmitri⟧ says the build server moved to ⟦IP|10.8.0.14⟧, can you update the DNS record?",
    ),
    # --- HR -----------------------------------------------------------------------------
    e(
        "hr",
        "Hi, I need to update the SSN on my W-4, the correct one is ⟦SSN|534-44-0478⟧. "
        "Thanks, ⟦P|Hannah Goldberg⟧",
    ),
    e(
        "hr",
        "My social security number was entered wrong in payroll: it should be "
        "⟦SSN|192-20-3733⟧, not what's on file.",
    ),
    e(
        "hr; date not labelled",
        "For the background check ⟦P|Marcus Whitfield⟧ gave SSN ⟦SSN|199-37-5972⟧ and date "
        "of birth 04/11/1987.",
    ),
    e(
        "hr; value at start",
        "⟦SSN|878-98-5246⟧ is my spouse's SSN, do I need it for the dependent enrolment?",
    ),
    e(
        "hr; email draft",
        "Draft an email to HR: 'Please change my bank details to "
        "⟦IBAN|DE15 9556 9113 6108 6770 54⟧ from the next payroll run. Regards, "
        "⟦P|Lars Henriksen⟧ (⟦EMP|EMP-552901⟧)'",
    ),
    e("hr", "What is the parental leave policy in ⟦LOC|Germany⟧? I'm based in ⟦LOC|Munich⟧."),
    e(
        "hr; city+country one span",
        "Employee ⟦EMP|EMP-073318⟧ is transferring from ⟦LOC|Dublin, Ireland⟧ to "
        "⟦LOC|Toronto⟧ on 1 July.",
    ),
    e(
        "hr; lowercase; typos",
        "pls fix my ssn in workday its ⟦SSN|158-06-6581⟧ (i typo'd the last digits when "
        "onbaording)",
    ),
    e(
        "hr",
        "Payroll question from ⟦P|Ingrid Johansson⟧: salary should go to "
        "⟦IBAN|NL67 ABNA 4758 2191 18⟧, not the old account.",
    ),
    e(
        "hr",
        "My manager ⟦P|Dmitri Volkov⟧ told me to ask here - does HR store SSNs like "
        "⟦SSN|748-65-5961⟧ in plain text?",
    ),
    e(
        "hr; city+state one span",
        "Hi! Quick one: my employee ID is ⟦EMP|EMP-449120⟧ and my new address is in "
        "⟦LOC|Austin, Texas⟧. Where do I update it?",
    ),
    e("hr", "Benefits enrolment for ⟦P|Kwame Mensah⟧, SSN ⟦SSN|595-01-3983⟧, dependants: 2."),
    e("hr; terse", "Can you check if ⟦EMP|EMP-835507⟧ still has 12 days of PTO left?"),
    e(
        "hr; SSN with spaces",
        "The I-9 for ⟦P|Leilani Kahale⟧ lists SSN ⟦SSN|170 88 1747⟧ - is the space format "
        "acceptable?",
    ),
    e(
        "hr; kenyan phone",
        "HR contact for the ⟦LOC|Nairobi⟧ team is ⟦P|Wanjiru Kamau⟧, ⟦PH|+254 20 765 4321⟧.",
    ),
    e(
        "hr",
        "Please send the offer letter to ⟦E|chloe.dubois@agence-lumiere.fr⟧ and cc "
        "⟦E|payroll.team@hr.northwind-analytics.com⟧.",
    ),
    e(
        "hr",
        "Reference check: ⟦P|Rafael Domínguez⟧ worked with us in ⟦LOC|Madrid⟧ from 2019 to 2022.",
    ),
    e(
        "hr; lowercase",
        "need my W-2 reissued. SSN ⟦SSN|690-37-0170⟧, emp id ⟦EMP|EMP-160293⟧, mailing "
        "address unchanged",
    ),
    # --- Expenses -----------------------------------------------------------------------
    e(
        "expense; city+country one span",
        "Expense claim: hotel in ⟦LOC|Nairobi, Kenya⟧, paid with corporate card "
        "⟦CC|4954 2555 0349 1068⟧, total KES 48,300.",
    ),
    e(
        "expense; amex",
        "I accidentally paid the client dinner with my personal Amex "
        "⟦CC|3479 558940 91104⟧ - can I get reimbursed to ⟦IBAN|GB27 NWBK 5178 8915 9474 49⟧?",
    ),
    e(
        "expense; lowercase",
        "card ⟦CC|4549-1210-3503-4465⟧ got charged twice for the same taxi ride",
    ),
    e(
        "expense; date not labelled",
        "Corporate Mastercard ⟦CC|5178 4436 8214 4834⟧ expires 09/26. How do I request a renewal?",
    ),
    e(
        "expense",
        "Reimburse €312.40 to ⟦IBAN|FR1284542260897361950238470⟧ please - ⟦P|Chloé Dubois⟧, "
        "⟦EMP|EMP-610042⟧",
    ),
    e(
        "expense; discover",
        "Receipts for the ⟦LOC|Singapore⟧ trip are attached. Card used: Discover "
        "⟦CC|6011-2277-8375-6235⟧.",
    ),
    e(
        "expense",
        "Mileage claim for ⟦P|Ahmed Siddiqui⟧: 212 km, ⟦LOC|Manchester⟧ to ⟦LOC|Leeds⟧ and back.",
    ),
    e(
        "expense; lowercase; no separators",
        "the conference fee went on my visa ⟦CC|4382606058651674⟧ instead of the company "
        "card, what now",
    ),
    e(
        "expense",
        "Please refund the duplicate charge of $640.00 on ⟦CC|5481-7290-0840-6432⟧ to "
        "⟦IBAN|ES96 4899 8447 0308 9255 3885⟧.",
    ),
    e(
        "expense; amex dashes",
        "Per diem for ⟦LOC|Milan, Italy⟧: can I claim breakfast if the hotel included it? "
        "Paid with ⟦CC|3720-860469-28445⟧.",
    ),
    e(
        "expense; discover 65",
        "Expense report EXP-2291 for ⟦P|Arjun Mehta⟧ includes a charge on card "
        "⟦CC|6572240328099707⟧ that isn't his.",
    ),
    e(
        "expense; italian iban",
        "Vendor bank details: ⟦IBAN|IT18X3587916179182125543410⟧, account holder "
        "⟦P|Giulia Ferraro⟧.",
    ),
    e(
        "expense",
        "Reimbursement goes to IBAN ⟦IBAN|NL75INGB2059818114⟧, right? I'm ⟦EMP|EMP-702486⟧.",
    ),
    e(
        "expense; parentheses",
        "Lost my corporate card (⟦CC|4501 9920 4538 0585⟧) at the airport in "
        "⟦LOC|Frankfurt⟧, please block it!",
    ),
    # --- Travel -------------------------------------------------------------------------
    e(
        "travel; german phone",
        "Book me a flight from ⟦LOC|Lisbon⟧ to ⟦LOC|Berlin⟧ on the 14th; my contact number "
        "there will be ⟦PH|+49 30 901820⟧.",
    ),
    e(
        "travel",
        "Traveller: ⟦P|Aiko Tanaka⟧, mobile ⟦PH|+1 212 555 0148⟧, destination ⟦LOC|Tokyo⟧.",
    ),
    e(
        "travel",
        "The hotel in ⟦LOC|Mexico City⟧ needs a card on file: ⟦CC|5226-6536-7030-1590⟧, "
        "guest name ⟦P|Sofía Hernández⟧.",
    ),
    e(
        "travel; uk phone",
        "The travel agency in ⟦LOC|London⟧ can be reached at ⟦PH|+44 20 7946 0958⟧ or "
        "⟦E|bookings@travel.northwind-analytics.com⟧.",
    ),
    e(
        "travel; lowercase",
        "visa letter needed for ⟦P|Olumide Adeyemi⟧ travelling to ⟦LOC|Lagos, Nigeria⟧ next month",
    ),
    e(
        "travel; mastercard 2-series",
        "Can I extend my ⟦LOC|Seoul⟧ trip by two days? Flights were booked on "
        "⟦CC|2221 2418 5755 4538⟧.",
    ),
    e(
        "travel; french phone",
        "Taxi from the ⟦LOC|Paris⟧ office to the airport - the driver's number is "
        "⟦PH|+33 1 86 95 42 17⟧",
    ),
    e(
        "travel; plus-addressing",
        "Rental car pickup in ⟦LOC|Denver⟧ under ⟦P|Emily Carter⟧, confirmation sent to "
        "⟦E|emily.carter+travel@gmail.com⟧.",
    ),
    e(
        "travel; indian phone",
        "Need an e-SIM for ⟦LOC|Bengaluru, India⟧; the local office number is "
        "⟦PH|+91 80 4718 2290⟧.",
    ),
    e(
        "travel; arrow",
        "Travel approval for ⟦EMP|EMP-931675⟧: ⟦LOC|Amsterdam⟧ → ⟦LOC|Reykjavík⟧, 3 nights.",
    ),
    # --- Customer escalations -----------------------------------------------------------
    e(
        "customer",
        "Customer ⟦P|Olumide Adeyemi⟧ (⟦E|olumide.adeyemi@yahoo.co.uk⟧) says he was billed "
        "on card ⟦CC|5325953876809093⟧ after cancelling.",
    ),
    e(
        "customer; org not labelled",
        "Escalation: ⟦P|Siobhan O'Neill⟧ from Acme Retail called ⟦PH|415.555.0172⟧ twice "
        "about the refund.",
    ),
    e(
        "customer; lowercase",
        "please draft a reply to ⟦E|m.haddad@customers.zephyr-air.ae⟧ apologising for "
        "yesterday's outage in ⟦LOC|Dubai⟧",
    ),
    e(
        "customer",
        "The customer pasted her full card number in the chat: ⟦CC|4637956309454631⟧. How do "
        "we purge it from the transcript?",
    ),
    e(
        "customer; canadian phone",
        "Angry customer on the line, ⟦P|Mohammed Haddad⟧, wants a callback at "
        "⟦PH|+1 (604) 555-0163⟧ before 5pm.",
    ),
    e(
        "customer; uppercase email",
        "Summarise this complaint from ⟦E|ACCOUNTS.PAYABLE@VENDOR-HALCYON.COM⟧: they say "
        "invoice payments to ⟦IBAN|DE57 6711 5066 4753 2088 56⟧ bounced.",
    ),
    e(
        "customer; pipe-separated record",
        "Customer record: ⟦P|Hiroshi Nakamura⟧ | ⟦E|hiroshi.n@kitsune-systems.co.jp⟧ | "
        "⟦PH|(206) 555-0142⟧ | ⟦LOC|Seattle⟧",
    ),
    e(
        "customer; lowercase",
        "can you translate this for the client in ⟦LOC|Montréal⟧? ⟦P|Geneviève Tremblay⟧ "
        "wants a reply in French",
    ),
    e(
        "customer; surname only",
        "⟦P|Okafor⟧ is handling the ⟦LOC|São Paulo⟧ escalation; the customer's card was "
        "⟦CC|6011 9053 7455 8850⟧.",
    ),
    e(
        "customer; amex spaces",
        "Refund approved for ⟦E|rafa.dominguez87@hotmail.es⟧, card ⟦CC|3787 177578 19977⟧, "
        "amount $89.99.",
    ),
    e(
        "customer",
        "Client ⟦P|Priscila Moreira⟧ in ⟦LOC|Brazil⟧ reports that her card "
        "⟦CC|5507422460291050⟧ was declined on the portal.",
    ),
    # --- Security incidents -------------------------------------------------------------
    e(
        "security",
        "SOC alert: 4,200 failed logins from ⟦IP|185.220.101.47⟧ targeting "
        "⟦P|Fatima Al-Sayed⟧'s account.",
    ),
    e(
        "security; lookalike domain",
        "A phishing mail from ⟦E|support@n0rthwind-analytics.co⟧ asked staff to confirm their "
        "SSN. ⟦P|Arjun Mehta⟧ replied with ⟦SSN|778-46-2161⟧ before we caught it.",
    ),
    e(
        "security; ipv6; ticket id not labelled",
        "Incident INC-007731: exfil attempt from ⟦IP|fe80::1c2b:4aff:fe3e:9a10⟧ on host build-07.",
    ),
    e(
        "security",
        "Suspicious RDP session from ⟦IP|91.203.57.144⟧ (geo: ⟦LOC|Kraków, Poland⟧) on "
        "⟦P|Tomasz Kowalski⟧'s workstation.",
    ),
    e(
        "security",
        "We found a CSV on a public share with SSNs, e.g. ⟦SSN|552-92-6301⟧ and "
        "⟦SSN|269-76-4012⟧. Who owns the exports share?",
    ),
    e(
        "security; ipv6",
        "Block ⟦IP|45.133.12.208⟧ and ⟦IP|2a02:4780:12:9c1::5⟧ at the edge, they're scanning "
        "our API.",
    ),
    e(
        "security",
        "Credential stuffing: the attacker used ⟦E|k.bondarenko@proton.me⟧ with a leaked "
        "password from ⟦IP|103.152.18.66⟧.",
    ),
    e(
        "security; four entity types",
        "Laptop stolen from ⟦P|Chen Jing⟧'s car in ⟦LOC|Chicago⟧. Last seen online from "
        "⟦IP|73.158.201.14⟧. Employee ⟦EMP|EMP-045829⟧.",
    ),
    e(
        "security; dlp",
        "DLP caught an outbound email containing card ⟦CC|4974-9921-3557-7601⟧ and SSN "
        "⟦SSN|015-74-3782⟧.",
    ),
    e(
        "security; full ipv6",
        "The attacker's C2 server resolved to ⟦IP|2001:0db8:85a3:0000:0000:8a2e:0370:7334⟧ "
        "in the pcap.",
    ),
    e(
        "security; value mid-question",
        "Is ⟦IP|198.51.100.201⟧ one of ours? It's hitting the login endpoint 50 times a second.",
    ),
    e(
        "security; lowercase; vishing",
        "report from ⟦P|Nadia Benali⟧: someone called her at ⟦PH|+44 161 496 0582⟧ pretending "
        "to be IT and asked for her MFA code",
    ),
    e(
        "security",
        "Account takeover suspected for ⟦E|j.oyelaran@lagos.northwind-analytics.com⟧ - login "
        "from ⟦IP|41.58.204.117⟧, ⟦LOC|Lagos⟧.",
    ),
    # --- Code snippets ------------------------------------------------------------------
    e(
        "code",
        'why does `requests.get("http://⟦IP|10.1.7.33⟧:8080/health")` time out from the CI runner?',
    ),
    e("code", 'ALLOWED_HOSTS = ["⟦IP|192.168.1.150⟧", "localhost"]  # is this safe for prod?'),
    e(
        "code; fixture",
        'Can I commit this fixture? test_user = {"name": "⟦P|Kateryna Bondarenko⟧", '
        '"email": "⟦E|kateryna.b+qa@northwind-analytics.com⟧", "ssn": "⟦SSN|568-06-1257⟧"}',
    ),
    e(
        "code; sql",
        "INSERT INTO payments (iban, holder) VALUES ('⟦IBAN|ES4550959721690237056902⟧', "
        "'⟦P|Rafael Domínguez⟧');",
    ),
    e(
        "code; subdomain email",
        "fix this regex, it doesn't match ⟦E|o.fernandes+alerts@mail.eu.northwind-analytics.com⟧",
    ),
    e(
        "code; shell",
        'curl -H "X-Forwarded-For: ⟦IP|203.0.113.77⟧" https://api.internal/v1/whoami returns '
        "403, why?",
    ),
    e(
        "code; yaml",
        "config.yaml has `db_host: ⟦IP|10.60.3.21⟧` and "
        "`admin_email: ⟦E|dba-oncall@northwind-analytics.com⟧` - should those be in git?",
    ),
    e(
        "code; test",
        'assert validate_card("⟦CC|4143279622490803⟧") is True  # fails on py3.12, any idea?',
    ),
    e(
        "code; variable names not labelled",
        'logger.info(f"user {user_email} from {ip_addr}") printed '
        "⟦E|ines.carvalho@northwind-analytics.com⟧ from ⟦IP|10.33.9.102⟧ in the prod logs",
    ),
    e(
        "code; test data",
        "Unit test uses phone ⟦PH|(646) 555-0123⟧ and IBAN ⟦IBAN|GB69BARC47757337780452⟧ - "
        "are these safe to keep?",
    ),
    e(
        "code; python",
        "mock_customer = Customer(name='⟦P|Oluwaseun Bakare⟧', phone='⟦PH|212-555-0176⟧', "
        "card='⟦CC|4751-6561-4053-2351⟧')",
    ),
    # --- Emails being drafted -----------------------------------------------------------
    e(
        "email-draft; title not labelled",
        "Draft: Dear Dr. ⟦P|Nguyen Thi Lan⟧, please find the contract attached. You can reach "
        "me at ⟦PH|(312) 555-0111⟧.",
    ),
    e(
        "email-draft; surname with title",
        "Write a polite follow-up to Ms. ⟦P|Hernández⟧ about the overdue invoice, her email "
        "is ⟦E|sofia.hernandez@mail.contoso-logistics.mx⟧.",
    ),
    e(
        "email-draft; first names",
        "Help me word this: 'Hi ⟦P|Jean-Luc⟧, the wire to "
        "⟦IBAN|FR91 2275 4431 1480 7992 0150 527⟧ went out today. Best, ⟦P|Ines⟧'",
    ),
    e(
        "email-draft; caps",
        "make this email sound less angry: ⟦P|Marcus⟧, you sent the client's SSN "
        "(⟦SSN|321-53-7820⟧) over Slack AGAIN.",
    ),
    e(
        "email-draft; german phone",
        "Translate to German: 'Our office in ⟦LOC|Hamburg⟧ will be closed on Friday. Call "
        "⟦PH|+49 40 8228 9310⟧ for urgent issues.'",
    ),
    e(
        "email-draft",
        "Draft an out-of-office: I'm in ⟦LOC|Oslo⟧ until the 20th; for urgent matters contact "
        "⟦P|Ingrid Johansson⟧ at ⟦E|ingrid.johansson@northwind-analytics.com⟧",
    ),
    e(
        "email-draft; title not labelled",
        "Proofread: 'Dear Prof. ⟦P|Adaeze Nwosu⟧, thank you for hosting us in ⟦LOC|Accra, Ghana⟧.'",
    ),
    e(
        "email-draft",
        "Reply to ⟦E|yuki.sato1990@docomo.ne.jp⟧ and tell her the payment to card "
        "⟦CC|6011713231864598⟧ has been reversed.",
    ),
    e(
        "email-draft; signature",
        "Email signature: ⟦P|Siddharth Rao⟧ | Senior Analyst | ⟦PH|+1 415 555 0163⟧ | "
        "⟦E|siddharth.rao@northwind-analytics.com⟧",
    ),
    # --- Terse / lists / values at the edges --------------------------------------------
    e(
        "terse; values at start and end",
        "⟦P|Amara Okafor⟧ — ⟦E|amara.okafor@northwind-analytics.com⟧",
    ),
    e("terse; phone with spaces", "contact: ⟦PH|415 555 0128⟧"),
    e("terse; value at end", "call me on ⟦PH|+44 20 7946 0321⟧"),
    e("terse", "ssn: ⟦SSN|515-44-1743⟧"),
    e("terse; grouped iban", "IBAN: ⟦IBAN|GB34 LOYD 2437 0763 5767 55⟧"),
    e(
        "list; multi-line",
        "Details below:\n- Name: ⟦P|Kofi Boateng⟧\n- Email: "
        "⟦E|kofi.boateng@northwind-analytics.com⟧\n- Phone: ⟦PH|(415) 555-0181⟧\n"
        "- Employee ID: ⟦EMP|EMP-378812⟧",
    ),
    e(
        "list; lowercase",
        "new joiners this week: ⟦P|Mei Lin⟧ (⟦LOC|Singapore⟧), ⟦P|Diego Alvarez⟧ "
        "(⟦LOC|Buenos Aires⟧), ⟦P|Anika Schulz⟧ (⟦LOC|Berlin⟧)",
    ),
    e("terse; value only", "⟦IP|10.14.2.250⟧"),
    e("terse", "Whose card is ⟦CC|4269 1595 6419 0694⟧?"),
    e("casual; lowercase", "my ssn is ⟦SSN|750-37-2829⟧ lol is that going to be stored somewhere"),
    e(
        "it-ticket; two emails",
        "Forward everything from ⟦E|noreply@notifications.northwind-analytics.com⟧ to "
        "⟦E|arjun.mehta+jira@northwind-analytics.com⟧.",
    ),
    e(
        "security; surname only",
        "Who is ⟦P|Okonkwo⟧? He emailed me from ⟦E|c.okonkwo@partners.bluepeak.io⟧ asking for "
        "the VPN config.",
    ),
    e(
        "expense; grouped italian iban",
        "The wire instructions say ⟦IBAN|IT02 X380 4902 7276 2514 9947 699⟧ — does that look "
        "right to you?",
    ),
    e(
        "email-draft; first name only",
        "Send the NDA to ⟦P|Hannah⟧ at ⟦E|hgoldberg@law-goldberg-partners.com⟧.",
    ),
    e(
        "hr; compliance",
        "Compliance asked why ⟦P|Priya Raghunathan⟧'s SSN ⟦SSN|812-54-3267⟧ shows up in the "
        "analytics warehouse.",
    ),
    e(
        "expense",
        "Reimbursement for ⟦EMP|EMP-516604⟧ should go to ⟦IBAN|FR5341118518576135824826105⟧ "
        "(account holder ⟦P|Julien Mercier⟧).",
    ),
    e(
        "travel; surname only",
        "Call ⟦P|Tanaka⟧ on ⟦PH|+1 415 555 0190⟧ if the ⟦LOC|Tokyo⟧ deployment fails overnight.",
    ),
    e(
        "email-draft; spanish phone",
        "Move the meeting with ⟦P|Lucía Navarro⟧ to Thursday; her assistant's number is "
        "⟦PH|+34 912 48 63 05⟧.",
    ),
    e(
        "casual; lowercase",
        "the guy from facilities, ⟦P|Patrick Byrne⟧, said to call ⟦PH|617-555-0155⟧ for the "
        "badge reader",
    ),
    e(
        "hr; date not labelled",
        "SSN ⟦SSN|388-62-8803⟧, DOB 1991-02-17, name ⟦P|Jasmine Okoro⟧ - please verify for "
        "the payroll audit.",
    ),
    e(
        "hr",
        "I typed ⟦SSN|701-75-8105⟧ into the wrong form field (the phone field!). Can you "
        "delete it?",
    ),
    e(
        "travel; amex no separators",
        "Which hotels near the ⟦LOC|Lisbon⟧ office take Amex? Mine is ⟦CC|371201701523974⟧.",
    ),
    e(
        "hr; referral",
        "Employee referral: ⟦P|Sergei Ivanov⟧, ⟦E|sergei.ivanov.dev@gmail.com⟧, "
        "⟦PH|+49 89 2441 7730⟧, currently in ⟦LOC|Munich⟧.",
    ),
    e(
        "security; first name only",
        "Can you check the whois for ⟦IP|37.120.193.219⟧? It shows up in ⟦P|Fatima⟧'s "
        "sign-in logs.",
    ),
    e(
        "it-ticket",
        "The gateway for the ⟦LOC|Madrid⟧ office is ⟦IP|10.70.0.1⟧, the old one was "
        "decommissioned.",
    ),
    e(
        "it-ticket",
        "⟦P|Jean-Luc Moreau⟧ from the ⟦LOC|Paris⟧ office asked for a new VPN profile. His "
        "laptop IP: ⟦IP|10.55.1.19⟧.",
    ),
    e(
        "it-ticket; two names",
        "Set up a conference bridge for ⟦P|Ravi Shankar⟧ and ⟦P|Thandiwe Ndlovu⟧ - dial-in "
        "⟦PH|+1 646 555 0114⟧.",
    ),
    e(
        "hr; casual; org not labelled",
        "quick q - my new bank is Revolut, iban ⟦IBAN|DE55614419801253825515⟧, do I need to "
        "tell payroll separately?",
    ),
    e(
        "travel",
        "The card ⟦CC|4836-5912-8528-1549⟧ on ⟦P|Aisha Bello⟧'s travel profile expired, "
        "please update.",
    ),
    e(
        "expense",
        "Discover card ⟦CC|6570 1343 0671 4589⟧ is the one on file for the ⟦LOC|Boston⟧ "
        "offsite deposit.",
    ),
    e(
        "travel; lowercase; mastercard 2-series",
        "hotel said card ⟦CC|2720269529407567⟧ was declined?? it's the new corporate mastercard",
    ),
    e(
        "customer; mixed-case email",
        "Customer ⟦E|Zanele.Dlamini@Capetown-Consulting.co.za⟧ wants her invoices sent to "
        "⟦E|finance@capetown-consulting.co.za⟧ too.",
    ),
    e(
        "expense; two ibans",
        "Please update the vendor IBAN from ⟦IBAN|NL32 RABO 1096 5217 20⟧ to "
        "⟦IBAN|GB97HBUK43966187123242⟧ - approved by ⟦P|Wei Zhang⟧.",
    ),
    e(
        "expense; arrow",
        "Expense: ⟦LOC|Cape Town⟧ → ⟦LOC|Johannesburg⟧ flight, card ⟦CC|5423 7518 0783 7527⟧.",
    ),
    e(
        "security; amex",
        "I think I leaked my card ⟦CC|373463202687496⟧ in the team channel, can the bot "
        "delete messages?",
    ),
    e(
        "expense",
        "Wire for the ⟦LOC|Rome⟧ venue: ⟦IBAN|IT48X2397297655685202714358⟧, beneficiary "
        "⟦P|Marco Bianchi⟧.",
    ),
    e(
        "customer; title not labelled",
        "Dear Mr. ⟦P|Declan O'Brien⟧, your ticket has been escalated. We'll call you at "
        "⟦PH|+44 20 7946 0675⟧ tomorrow.",
    ),
    e("hr", "SSN for new hire ⟦P|Gabriel Santos⟧ is ⟦SSN|811-15-1013⟧, employee ⟦EMP|EMP-264093⟧."),
    e(
        "hr; SSN with spaces",
        "Does the scanner catch SSNs written with spaces like ⟦SSN|332 57 7482⟧?",
    ),
    e("hr", "Tax form shows ⟦SSN|336-02-8579⟧ but my card says something else - who do I contact?"),
    e(
        "travel; city+country one span",
        "For the visa application: applicant ⟦P|Abebe Girma⟧, born in "
        "⟦LOC|Addis Ababa, Ethiopia⟧, phone ⟦PH|+1 202 555 0139⟧.",
    ),
    e(
        "it-ticket; subdomain email",
        "Send the laptop return label to ⟦E|m.schneider@de.northwind-analytics.com⟧; she's "
        "in the ⟦LOC|Hamburg⟧ office.",
    ),
    e(
        "it-ticket; plus-addressing",
        "⟦E|ops-alerts+pager@northwind-analytics.com⟧ gets too many pages from ⟦IP|10.90.4.3⟧",
    ),
    e(
        "it-ticket; lowercase",
        "contractor ⟦P|Liam Walsh⟧ needs access from ⟦IP|82.132.214.59⟧ only",
    ),
    e("hr", "Update my emergency contact: ⟦P|Sarah Cohen⟧, ⟦PH|(917) 555-0126⟧."),
    e(
        "hr; first name only",
        "⟦P|Nkechi⟧ asked whether the SSN ⟦SSN|821-13-8909⟧ on her pay stub is masked anywhere.",
    ),
    e(
        "expense; terse; reference not labelled",
        "payment to ⟦IBAN|ES7495510082922098344641⟧ failed, ref PAY-88213",
    ),
    e("customer", "Our CFO ⟦P|Victoria Lindqvist⟧ wants the ⟦LOC|Stockholm⟧ numbers by EOD."),
    e(
        "travel; city+country one span",
        "Team offsite in ⟦LOC|Porto, Portugal⟧ - RSVP to ⟦E|events@northwind-analytics.com⟧ "
        "by 3 May",
    ),
    e("hr; time not labelled", "Phone screen with ⟦P|Daniel Kim⟧ at ⟦PH|650-555-0117⟧, 10:30 PT."),
    e("expense", "Please void card ⟦CC|6011651007906880⟧ and issue a new one to ⟦P|Omar Farouk⟧."),
    e("hr", "The tax ID field isn't the SSN, right? I entered ⟦SSN|368-54-5859⟧ there."),
    e(
        "security; audit",
        "Re: audit. ⟦P|Rebecca Stone⟧ (⟦E|rebecca.stone@auditors.kpmg-example.com⟧) needs "
        "read access from ⟦IP|192.0.2.146⟧.",
    ),
    e(
        "expense; grouped iban",
        "Refund to ⟦IBAN|DE97 7324 1688 0530 5250 30⟧ for ⟦P|Katarzyna Nowak⟧ (⟦EMP|EMP-627305⟧).",
    ),
    e("terse; slash-separated", "⟦P|Elena Popescu⟧ / ⟦PH|415-555-0102⟧ / ⟦LOC|Bucharest⟧"),
    e(
        "hr; two people",
        "W-4 corrections: ⟦P|Brian Murphy⟧ ⟦SSN|323-11-3308⟧; ⟦P|Keisha Johnson⟧ "
        "⟦SSN|047-91-5584⟧.",
    ),
    e(
        "hr",
        "Is it OK to email ⟦SSN|430-23-4630⟧ to the benefits provider at "
        "⟦E|enrolment@benefits.meridianhealth-example.com⟧?",
    ),
    e("terse", "social security #: ⟦SSN|013-42-6384⟧"),
    e("hr", "Verify employee ⟦EMP|EMP-884213⟧'s SSN ⟦SSN|363-98-6340⟧ against the I-9."),
    e(
        "casual; lowercase names",
        "pls ask ⟦P|okafor⟧ to resend the ⟦LOC|lisbon⟧ invoice to "
        "⟦E|finance@northwind-analytics.com⟧",
    ),
    e(
        "phone: no separators, not an SSN",
        "If the kiosk is down call ⟦PH|4155550143⟧ and quote your badge number.",
    ),
    e(
        "customer; typos",
        "custmer ⟦P|Tunde Bakare⟧ recieved someone elses invoice, his emial is "
        "⟦E|tunde.bakare@fastmail.com⟧ and card ⟦CC|5123 4598 7712 0047⟧",
    ),
    e(
        "it-ticket; typos",
        "teh wifi in the ⟦LOC|Dublin⟧ office gives me ⟦IP|169.254.33.7⟧, no internet. "
        "⟦EMP|EMP-390266⟧",
    ),
    e(
        "travel; visa card",
        "Please charge the ⟦LOC|Vienna⟧ hotel deposit to ⟦CC|4716-2083-5529-1184⟧ and send "
        "the invoice to ⟦E|travel-desk@northwind-analytics.com⟧.",
    ),
    e(
        "customer; netherlands phone",
        "The ⟦LOC|Rotterdam⟧ distributor, ⟦P|Pieter de Vries⟧, asked us to call "
        "⟦PH|+31 20 794 6612⟧ about the delayed shipment.",
    ),
    e(
        "security; multi-sentence",
        "We saw an impossible-travel alert. ⟦P|Hyun-woo Park⟧ signed in from "
        "⟦LOC|Seoul⟧ at 09:02 and from ⟦LOC|Lima, Peru⟧ at 09:20. Source IP of the second "
        "login: ⟦IP|190.232.18.45⟧.",
    ),
    e(
        "hr; formal",
        "Dear HR team, please note that my social security number is ⟦SSN|245-61-8093⟧ and "
        "my personal email is ⟦E|m.alvarez.home@icloud.com⟧. Kind regards, "
        "⟦P|Mariana Álvarez⟧",
    ),
    e(
        "customer; italian phone",
        "Escalate to ⟦P|Francesca Romano⟧ in ⟦LOC|Milan⟧: the client wants a call back on "
        "⟦PH|+39 02 8734 5521⟧.",
    ),
    e(
        "expense; quoted values",
        'Card "⟦CC|6011 4827 1930 5512⟧" belongs to "⟦P|Noah Goldstein⟧", not to me.',
    ),
    e(
        "it-ticket; portuguese phone",
        "Desk phone for ⟦P|Inês Carvalho⟧ in ⟦LOC|Lisbon⟧ should be "
        "⟦PH|+351 21 384 2719⟧, please update the directory.",
    ),
    # --- Hard negatives -------------------------------------------------------------------
    e("negative: SSN word", "Where do I update my SSN in Workday?"),
    e(
        "negative: social security number words",
        "What is the social security number field on the onboarding form used for?",
    ),
    e("negative: IBAN word", "HR asked for my IBAN but I can't find it in the banking app."),
    e("negative: version numbers", "Upgrade Python from 3.10.4 to 3.11.7 on all build agents."),
    e(
        "negative: four-part build number (octet > 255)",
        "Is Windows build 10.0.19045.3803 patched against the print spooler bug?",
    ),
    e(
        "negative: order number",
        "Order #88231904 still hasn't shipped, can you chase the supplier?",
    ),
    e(
        "negative: ticket id",
        "Ticket INC-004512 was reopened this morning - same error as last week.",
    ),
    e("negative: date, time, room", "Move the retro to 2024-03-15 at 14:30 in room 4.12."),
    e("negative: 9-digit invoice number", "Finance says invoice 482913377 was paid twice."),
    e(
        "negative: prices",
        "The laptop costs $1,249.99 plus $89.00 shipping, is that within budget?",
    ),
    e(
        "negative: product and company names",
        "Should I install Northwind Insight 2.4.1 or wait for the Contoso Connector update?",
    ),
    e(
        "negative: code with variable names",
        'user_email = request.form.get("email")\nip_addr = request.headers.get("X-Real-IP")',
    ),
    e(
        "negative: SSN column name",
        "The SSN column in the customers table must be masked, see DATA-2291.",
    ),
    e(
        "negative: SSN format placeholder",
        "Format for SSNs is XXX-XX-XXXX, right? Asking for the form validation.",
    ),
    e("negative: IBAN word", "Our IBAN validator rejects lowercase country codes, is that a bug?"),
    e("negative: last four digits", "The card ending in 4417 was declined at the hotel."),
    e(
        "negative: 16-digit reference failing Luhn",
        "PO reference 4000 1234 5678 9011 appears on the invoice header.",
    ),
    e(
        "negative: malformed employee id (5 digits)",
        "EMP-20481 can't be right, employee IDs have six digits.",
    ),
    e(
        "negative: employee-id lookalike with prefix",
        "TEMP-204817 is the badge number for the temporary contractor desk.",
    ),
    e("negative: release tag and time", "Release v4.18.2 broke the ingest job at 03:14 UTC."),
    e("negative: phone extension", "Call the helpdesk on extension 4471 if the kiosk freezes."),
    e("negative: config numbers", "Set the retry limit to 1000000 and the timeout to 30000 ms."),
    e("negative: financial figures", "Q3 revenue was 12.4 million, up 8.5% on Q2."),
    e(
        "negative: company names",
        "Microsoft and Salesforce both sent proposals for the CRM migration.",
    ),
    e(
        "negative: phone_number column name",
        "What does the phone_number column hold - varchar(20) or bigint?",
    ),
    e("negative: tracking number", "Tracking number 1Z999AA10123456784 shows it stuck in customs."),
    e("negative: config values", "Set max_connections=250 and shared_buffers=4GB on the replica."),
    e(
        "negative: service tag",
        "My monitor's service tag is CN-0J8F2D-74261-5A3 - is it still under warranty?",
    ),
    e("negative: IP word and version", "The IP allowlist page throws a 500 since the 2.3 release."),
    e(
        "negative: 9-digit public routing number",
        "The ABA routing number on the vendor form is 021000021 - is that the bank's or ours?",
    ),
    e(
        "negative: SSN masking code",
        'def mask_ssn(ssn: str) -> str:\n    return "***-**-" + ssn[-4:]',
    ),
    e(
        "negative: card terminology",
        "Can the assistant explain what a CVV is and why we never store it?",
    ),
    e(
        "negative: PII category words",
        "Please redact all PII (names, emails, SSNs, IBANs) before pasting logs here.",
    ),
    e("negative: desk number", "Desk B-214 on floor 2 is free from Monday."),
    e("negative: flight details", "Flight departs 07:45 from gate 22B, seat 14C."),
    e(
        "negative: amounts and receipt number",
        "Expense total: 1,482.50 EUR for 3 nights, receipt no. 20240311-77.",
    ),
    e("negative: placeholders", "Phone: TBD / Email: TBD / Employee ID: pending"),
    e(
        "negative: hash prefix",
        "The SHA-256 of the installer starts with 9f86d081884c7d65 - does it match?",
    ),
    e("negative: pod name", "Pod web-7d9f8c6b5-x2k4q in namespace prod keeps OOMKilling."),
    e(
        "negative: employee-id regex text",
        "Set the regex to ^EMP-\\d{6}$ so it only matches employee IDs.",
    ),
    e("negative: social security words", "Is 'social security' capitalised in our style guide?"),
    e(
        "negative: credit card words",
        "How many credit card transactions did we process in 2023? Roughly 1.2M?",
    ),
    e(
        "negative: password policy numbers",
        "Password must be 12-64 characters and rotate every 90 days.",
    ),
    e(
        "negative: SSN storage type",
        "The spec says the SSN must be stored as a 9-digit integer, not a string.",
    ),
    e(
        "negative: IBAN and BIC words",
        "Where's the IBAN field on the new supplier form? I only see BIC.",
    ),
    e(
        "negative: 9-digit invoice next to a name",
        "Ask ⟦P|Okafor⟧ about invoice 730118245 and order 88231904.",
    ),
    e(
        "negative: four-part build number next to a name",
        "⟦P|Lena Fischer⟧ promoted build 2.14.0.1027 to staging at 09:15.",
    ),
    e(
        "negative: subnet mask is not PII",
        "Which subnet mask do we use on the guest wifi, 255.255.255.0?",
        "255.255.255.0",
    ),
    e(
        "negative: ISO date and amount",
        "Expense EXP-4410 dated 2023-11-30 for USD 2,300.00 is still pending approval.",
    ),
    e(
        "negative: email word and template variable",
        "Why does the welcome email say 'Hi {first_name}' instead of the actual name?",
    ),
    e(
        "negative: api version and port",
        "The API v2.0 endpoint listens on port 8443, the old one on 8080.",
    ),
    e(
        "negative: ISBN",
        "Can we expense the book with ISBN 978-0-13-468599-1 from the training budget?",
    ),
]


# ---------------------------------------------------------------------------------------
# Canary values: unique, obviously fake, format-valid. Must never appear in the corpus.
# ---------------------------------------------------------------------------------------
CANARIES: list[tuple[str, str]] = [
    ("EMAIL_ADDRESS", "canary.vexley+pii@canary-mail.example.com"),
    ("EMAIL_ADDRESS", "zx9.canary.probe@pii-canary.example.org"),
    ("PHONE_NUMBER", "(646) 555-0187"),
    ("PHONE_NUMBER", "+44 161 496 0213"),
    ("CREDIT_CARD", "4999 0000 1111 2229"),
    ("CREDIT_CARD", "5555-0000-9999-8880"),
    ("US_SSN", "587-39-4102"),
    ("US_SSN", "643-21-7759"),
    ("IBAN_CODE", "GB63 QUIL 0011 2233 4455 66"),
    ("PERSON", "Thaddeus Quillfeather"),
]


# ---------------------------------------------------------------------------------------
# Validators
# ---------------------------------------------------------------------------------------
class CorpusError(Exception):
    """A check failed; the corpus is not written."""


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    n = len(digits)
    if digits.startswith("4") and n in (13, 16, 19):
        return "visa"
    if n == 16 and (51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720):
        return "mastercard"
    if n == 15 and digits[:2] in ("34", "37"):
        return "amex"
    if n == 16 and (digits.startswith(("6011", "65")) or 644 <= int(digits[:3]) <= 649):
        return "discover"
    return None


CARD_SHAPE = re.compile(r"\d+|\d+(?: \d+)+|\d+(?:-\d+)+")


def check_card(value: str) -> None:
    if not CARD_SHAPE.fullmatch(value):
        raise CorpusError(f"credit card {value!r}: mixed or unknown separators")
    digits = re.sub(r"\D", "", value)
    if card_brand(digits) is None:
        raise CorpusError(f"credit card {value!r}: unknown brand/length")
    if not luhn_valid(digits):
        raise CorpusError(f"credit card {value!r}: fails the Luhn check")


IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27}
IBAN_GROUPED = re.compile(r"[A-Z]{2}\d{2}(?: [A-Z0-9]{4})*(?: [A-Z0-9]{1,4})?")
IBAN_COMPACT = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]+")


def iban_mod97(compact: str) -> int:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97


def iban_valid(compact: str) -> bool:
    return (
        IBAN_LENGTHS.get(compact[:2]) == len(compact)
        and IBAN_COMPACT.fullmatch(compact) is not None
        and iban_mod97(compact) == 1
    )


def check_iban(value: str) -> None:
    if " " in value and not IBAN_GROUPED.fullmatch(value):
        raise CorpusError(f"IBAN {value!r}: spaced but not in groups of four")
    compact = value.replace(" ", "")
    if compact[:2] not in IBAN_LENGTHS:
        raise CorpusError(f"IBAN {value!r}: country not in {sorted(IBAN_LENGTHS)}")
    if not iban_valid(compact):
        raise CorpusError(f"IBAN {value!r}: wrong length or fails mod-97")


SSN_SHAPE = re.compile(r"(\d{3})([- ])(\d{2})\2(\d{4})")
FAMOUS_SSNS = {"078051120", "123456789", "219099999"}


def ssn_realistic(area: str, group: str, serial: str) -> bool:
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
        and area + group + serial not in FAMOUS_SSNS
    )


def check_ssn(value: str) -> None:
    m = SSN_SHAPE.fullmatch(value)
    if m is None:
        raise CorpusError(f"SSN {value!r}: not AAA-GG-SSSS (dashes or spaces)")
    if not ssn_realistic(m.group(1), m.group(3), m.group(4)):
        raise CorpusError(f"SSN {value!r}: unrealistic (area/group/serial rules or famous)")


EMAIL_SHAPE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def check_email(value: str) -> None:
    if not EMAIL_SHAPE.fullmatch(value):
        raise CorpusError(f"email {value!r}: malformed")


PHONE_SHAPE = re.compile(r"\+?[\d ().-]+")


def check_phone(value: str) -> None:
    digits = re.sub(r"\D", "", value)
    if not PHONE_SHAPE.fullmatch(value) or not 7 <= len(digits) <= 15:
        raise CorpusError(f"phone {value!r}: malformed")
    if not value[-1].isdigit() or not (value[0].isdigit() or value[0] in "+("):
        raise CorpusError(f"phone {value!r}: span includes surrounding punctuation")


def check_ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise CorpusError(f"IP {value!r}: not a valid address") from exc


EMP_SHAPE = re.compile(r"EMP-\d{6}")


def check_employee_id(value: str) -> None:
    if not EMP_SHAPE.fullmatch(value):
        raise CorpusError(f"employee id {value!r}: not EMP- followed by six digits")


TITLES = ("Dr.", "Dr ", "Mr.", "Mr ", "Mrs.", "Ms.", "Ms ", "Prof.", "Prof ", "Sir ")


def check_name(value: str, label: str) -> None:
    if value.startswith(TITLES):
        raise CorpusError(f"{label} {value!r}: title must stay outside the span")
    if not (value[0].isalpha() and value[-1].isalpha()):
        raise CorpusError(f"{label} {value!r}: span includes surrounding punctuation")


def check_value(label: str, value: str) -> None:
    if not value or value != value.strip():
        raise CorpusError(f"{label} {value!r}: empty or has surrounding whitespace")
    if label == "CREDIT_CARD":
        check_card(value)
    elif label == "IBAN_CODE":
        check_iban(value)
    elif label == "US_SSN":
        check_ssn(value)
    elif label == "EMAIL_ADDRESS":
        check_email(value)
    elif label == "PHONE_NUMBER":
        check_phone(value)
    elif label == "IP_ADDRESS":
        check_ip(value)
    elif label == "EMPLOYEE_ID":
        check_employee_id(value)
    else:
        check_name(value, label)


# ---------------------------------------------------------------------------------------
# Unlabelled-PII detectors: anything these find must lie inside a span (or be allowed).
# ---------------------------------------------------------------------------------------
def _email_hits(text: str) -> list[tuple[int, int]]:
    pattern = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
    return [m.span() for m in re.finditer(pattern, text)]


def _employee_hits(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\bEMP-\d{6}\b", text)]


def _ipv4_hits(text: str) -> list[tuple[int, int]]:
    hits = []
    for m in re.finditer(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])", text):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        hits.append(m.span())
    return hits


def _ipv6_hits(text: str) -> list[tuple[int, int]]:
    hits = []
    for m in re.finditer(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])", text):
        try:
            ipaddress.IPv6Address(m.group())
        except ValueError:
            continue
        hits.append(m.span())
    return hits


def _ssn_hits(text: str) -> list[tuple[int, int]]:
    hits = []
    for m in re.finditer(r"(?<![\d-])(\d{3})[- ](\d{2})[- ](\d{4})(?![\d-])", text):
        if ssn_realistic(m.group(1), m.group(2), m.group(3)):
            hits.append(m.span())
    return hits


def _card_hits(text: str) -> list[tuple[int, int]]:
    hits = []
    for m in re.finditer(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)", text):
        digits = re.sub(r"\D", "", m.group())
        if card_brand(digits) and luhn_valid(digits):
            hits.append(m.span())
    return hits


def _us_phone_hits(text: str) -> list[tuple[int, int]]:
    pattern = r"(?<![\d-])(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\d-])"
    return [m.span() for m in re.finditer(pattern, text)]


def _iban_hits(text: str) -> list[tuple[int, int]]:
    hits = []
    for m in re.finditer(r"\b[A-Z]{2}\d{2}", text):
        start = m.start()
        for end in range(m.end(), min(len(text), start + 42) + 1):
            candidate = text[start:end]
            if not re.fullmatch(r"[A-Z0-9 ]+", candidate):
                break
            compact = candidate.replace(" ", "")
            if candidate[-1] != " " and iban_valid(compact):
                hits.append((start, end))
    return hits


DETECTORS = {
    "email": _email_hits,
    "employee id": _employee_hits,
    "IPv4": _ipv4_hits,
    "IPv6": _ipv6_hits,
    "SSN": _ssn_hits,
    "credit card": _card_hits,
    "US phone": _us_phone_hits,
    "IBAN": _iban_hits,
}


# ---------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------
def parse(entry: Entry) -> tuple[str, list[dict[str, int | str]]]:
    text_parts: list[str] = []
    spans: list[dict[str, int | str]] = []
    pos = 0
    length = 0
    for m in MARK.finditer(entry.marked):
        plain = entry.marked[pos : m.start()]
        text_parts.append(plain)
        length += len(plain)
        alias, value = m.group(1), m.group(2)
        if alias not in ALIASES:
            raise CorpusError(f"unknown label alias {alias!r} in {entry.marked!r}")
        spans.append(
            {"start": length, "end": length + len(value), "label": ALIASES[alias], "value": value}
        )
        text_parts.append(value)
        length += len(value)
        pos = m.end()
    text_parts.append(entry.marked[pos:])
    text = "".join(text_parts)
    if "⟦" in text or "⟧" in text:
        raise CorpusError(f"unbalanced or malformed marker in {entry.marked!r}")
    return text, spans


def check_entry(entry_id: str, entry: Entry, text: str, spans: list[dict[str, int | str]]) -> None:
    if not entry.note:
        raise CorpusError(f"{entry_id}: missing note")
    if text != text.strip() or not text:
        raise CorpusError(f"{entry_id}: empty text or surrounding whitespace")
    previous_end = -1
    for span in spans:
        start, end = int(span["start"]), int(span["end"])
        label, value = str(span["label"]), str(span["value"])
        if label not in LABELS:
            raise CorpusError(f"{entry_id}: unknown label {label}")
        if text[start:end] != value:
            raise CorpusError(f"{entry_id}: text[{start}:{end}] != {value!r}")
        if start < previous_end:
            raise CorpusError(f"{entry_id}: overlapping spans at {start}")
        previous_end = end
        check_value(label, value)
        # A span must not cut a word or a number in half.
        before = text[start - 1] if start > 0 else " "
        after = text[end] if end < len(text) else " "
        if before.isalnum() or after.isalnum():
            raise CorpusError(f"{entry_id}: span {value!r} is glued to a neighbouring word")
    for kind, detector in DETECTORS.items():
        for start, end in detector(text):
            found = text[start:end]
            covered = any(int(s["start"]) <= start and end <= int(s["end"]) for s in spans)
            if not covered and found not in entry.allow:
                raise CorpusError(f"{entry_id}: unlabelled {kind} {found!r} in {text!r}")


def normalise(s: str) -> str:
    return re.sub(r"[^0-9a-z@]", "", s.lower())


def check_canaries(texts: list[str]) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    haystack = [normalise(t) for t in texts]
    for label, value in CANARIES:
        check_value(label, value)
        key = normalise(value)
        if key in seen:
            raise CorpusError(f"canary {value!r} is duplicated")
        seen.add(key)
        if any(value in t for t in texts) or any(key in h for h in haystack):
            raise CorpusError(f"canary {value!r} appears in the corpus")
        if label == "PERSON" and any(
            part.lower() in t.lower() for part in value.split() for t in texts
        ):
            raise CorpusError(f"part of canary name {value!r} appears in the corpus")
        out.append({"label": label, "value": value})
    if Counter(label for label, _ in CANARIES) != Counter(
        {
            "EMAIL_ADDRESS": 2,
            "PHONE_NUMBER": 2,
            "CREDIT_CARD": 2,
            "US_SSN": 2,
            "IBAN_CODE": 1,
            "PERSON": 1,
        }
    ):
        raise CorpusError("canary set must be 2 emails, 2 phones, 2 cards, 2 SSNs, 1 IBAN, 1 name")
    return out


def build() -> tuple[str, str, dict[str, object]]:
    records: list[dict[str, object]] = []
    label_of_value: dict[str, str] = {}
    counts: Counter[str] = Counter()
    values: dict[str, set[str]] = {label: set() for label in LABELS}
    negatives = 0
    multi = 0
    seen_texts: set[str] = set()
    for index, entry in enumerate(ENTRIES, start=1):
        entry_id = f"pii-{index:04d}"
        text, spans = parse(entry)
        check_entry(entry_id, entry, text, spans)
        if text in seen_texts:
            raise CorpusError(f"{entry_id}: duplicate sentence {text!r}")
        seen_texts.add(text)
        for span in spans:
            label, value = str(span["label"]), str(span["value"])
            if label_of_value.setdefault(value, label) != label:
                raise CorpusError(f"{value!r} labelled both {label_of_value[value]} and {label}")
            counts[label] += 1
            values[label].add(value)
        if entry.note.startswith("negative"):
            negatives += 1
        if len({span["label"] for span in spans}) >= 2:
            multi += 1
        if not spans and not entry.note.startswith("negative"):
            raise CorpusError(f"{entry_id}: no spans but not tagged as a negative")
        records.append({"id": entry_id, "text": text, "spans": spans, "note": entry.note})

    problems = []
    if len(records) < MIN_SENTENCES:
        problems.append(f"{len(records)} sentences < {MIN_SENTENCES}")
    if negatives < MIN_NEGATIVES:
        problems.append(f"{negatives} negatives < {MIN_NEGATIVES}")
    if multi < MIN_MULTI_ENTITY:
        problems.append(f"{multi} multi-entity sentences < {MIN_MULTI_ENTITY}")
    for label, minimum in MIN_COUNTS.items():
        if counts[label] < minimum:
            problems.append(f"{label}: {counts[label]} spans < {minimum}")
        elif len(values[label]) / counts[label] < MIN_UNIQUE_RATIO:
            problems.append(f"{label}: too many repeated values")
    if problems:
        raise CorpusError("; ".join(problems))

    canaries = check_canaries([str(r["text"]) for r in records])
    corpus = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    canary_doc = {
        "description": (
            "Fake but format-valid PII values that never occur in pii_corpus.jsonl. A canary "
            "test sends them through the stack and asserts none reaches any log or trace."
        ),
        "canaries": canaries,
    }
    canary_json = json.dumps(canary_doc, ensure_ascii=False, indent=2) + "\n"
    stats: dict[str, object] = {
        "sentences": len(records),
        "negatives": negatives,
        "multi_entity_sentences": multi,
        "spans": dict(sorted(counts.items())),
        "distinct_values": {label: len(v) for label, v in sorted(values.items())},
    }
    return corpus, canary_json, stats


def main(argv: list[str]) -> int:
    check_only = "--check" in argv
    try:
        corpus, canary_json, stats = build()
    except CorpusError as exc:
        print(f"build_corpus: FAILED: {exc}", file=sys.stderr)
        return 1
    if check_only:
        stale = [
            p.name
            for p, content in ((CORPUS_PATH, corpus), (CANARY_PATH, canary_json))
            if not p.is_file() or p.read_text(encoding="utf-8") != content
        ]
        if stale:
            print(f"build_corpus: out of date: {', '.join(stale)}", file=sys.stderr)
            return 1
    else:
        CORPUS_PATH.write_text(corpus, encoding="utf-8", newline="\n")
        CANARY_PATH.write_text(canary_json, encoding="utf-8", newline="\n")
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
