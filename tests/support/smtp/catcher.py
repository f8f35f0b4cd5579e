"""A real SMTP server for the mailer's tests (aiosmtpd): it listens on 127.0.0.1:PORT (0 for
any free port) and writes each message it accepts into FOLDER as JSON (envelope, headers,
text and html parts decoded), one file a message, named in order; and `ready` holding the
port once it listens. The test harness (tests/support/src/smtp.rs) reads them.

    python3 catcher.py FOLDER PORT
"""

import asyncio
import email
import email.policy
import json
import os
import sys

from aiosmtpd.smtp import SMTP


class Catcher:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = {}
        for kind in ("plain", "html"):
            body = message.get_body((kind,))
            # Line ends as the sender wrote them before SMTP's CRLF.
            content = body.get_content().replace("\r\n", "\n") if body is not None else None
            parts[kind] = content
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {name: str(value) for name, value in message.items()},
            "text": parts["plain"],
            "html": parts["html"],
        }
        self.count += 1
        name = os.path.join(self.folder, f"{self.count:06d}.json")
        # Written whole, then renamed: a reader never sees half a message.
        with open(name + ".tmp", "w") as out:
            json.dump(record, out)
        os.rename(name + ".tmp", name)
        return "250 OK"


async def main(folder, port):
    loop = asyncio.get_running_loop()
    catcher = Catcher(folder)
    server = await loop.create_server(lambda: SMTP(catcher), "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    with open(os.path.join(folder, "ready.tmp"), "w") as out:
        out.write(str(bound))
    os.rename(os.path.join(folder, "ready.tmp"), os.path.join(folder, "ready"))
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
