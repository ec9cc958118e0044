"""Build 1000 recipients' messages: coretrack's MIME template vs a fresh EmailMessage each.

Run: scripts/bench-mime [RECIPIENTS]
"""

import secrets
import sys
import time
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from coretrack.sending.mime import AttachmentData, MessageTemplate, html_to_text, insert_image, tracking_image
from coretrack.tracking import tokens

PUBLIC_URL = "https://crm.example.test/crm"
HTML = "<html><body>" + "<p>Dear customer, here is this month’s news about our products.</p>\n" * 40 + "</body></html>"
ATTACHMENT = AttachmentData("brochure.pdf", "application/pdf", secrets.token_bytes(50_000))
FIELDS = dict(from_address="crm@example.test", from_name="Example CRM", subject="Monthly news",
              reply_to="sales@example.test")


def with_template(recipients):
    template = MessageTemplate(html=HTML, attachments=[ATTACHMENT], public_url=PUBLIC_URL, **FIELDS)
    return [template.render(address, "Some Body", token) for address, token in recipients]


def fresh_message_each(recipients):
    out = []
    for address, token in recipients:
        html = insert_image(HTML, tracking_image(PUBLIC_URL, token))
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = Address(FIELDS["from_name"], addr_spec=FIELDS["from_address"])
        message["To"] = Address("Some Body", addr_spec=address)
        message["Reply-To"] = FIELDS["reply_to"]
        message["Subject"] = FIELDS["subject"]
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = f"<{secrets.token_hex(16)}@example.test>"
        message.set_content(html_to_text(HTML), charset="utf-8", cte="quoted-printable")
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        message.add_attachment(ATTACHMENT.data, maintype="application", subtype="pdf", filename=ATTACHMENT.filename)
        out.append(message.as_bytes())
    return out


def timed(build, recipients):
    start = time.perf_counter()
    build(recipients)
    return time.perf_counter() - start


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    recipients = [(f"r{n}@example.test", tokens.new_token(b"bench")) for n in range(count)]
    template_seconds = timed(with_template, recipients)
    fresh_seconds = timed(fresh_message_each, recipients)
    print(f"{count} recipients, 50 kB attachment")
    print(f"template, filled per recipient: {template_seconds:.3f} s ({template_seconds / count * 1e3:.3f} ms each)")
    print(f"fresh EmailMessage each:        {fresh_seconds:.3f} s ({fresh_seconds / count * 1e3:.3f} ms each)")
    print(f"ratio: the template is {fresh_seconds / template_seconds:.1f}x faster")


if __name__ == "__main__":
    main()
