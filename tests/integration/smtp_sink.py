#!/usr/bin/env python3
"""A real SMTP server on loopback for the integration tests (aiosmtpd).

Every message it accepts is written to DIR as NNNNNN.json (written to a temporary name, then
renamed): the envelope sender and recipients, the From/To/Subject/Message-ID headers and the
decoded plain-text body. It prints the port it listens on as its first line of output, then
serves until it is killed.

    python3 smtp_sink.py --dir DIR [--port PORT] [--refuse ADDRESS ...]

--refuse makes RCPT TO for that address fail with 550 (a permanent refusal).
"""

import argparse
import asyncio
import email
import email.policy
import json
import os

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory, refused):
        self.directory = directory
        self.refused = {address.lower() for address in refused}
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["from"]),
            "to": str(message["to"]),
            "subject": str(message["subject"]),
            "message_id": str(message["message-id"]),
            "content_type": message.get_content_type(),
            "body": body.get_content() if body is not None else "",
        }
        self.count += 1
        name = os.path.join(self.directory, f"{self.count:06d}")
        with open(name + ".tmp", "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.rename(name + ".tmp", name + ".json")
        return "250 OK"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--refuse", action="append", default=[])
    args = parser.parse_args()
    handler = Sink(args.dir, args.refuse)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test"), "127.0.0.1", args.port
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
