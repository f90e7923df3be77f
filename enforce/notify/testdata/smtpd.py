"""A loopback SMTP server for the email channel's tests.

Usage: smtpd.py OUTDIR USER PASSWORD [plain|starttls|tls CERT KEY]. Listens
on 127.0.0.1 on a free port, prints the port on stdout, requires AUTH PLAIN
with USER and PASSWORD and writes each message to OUTDIR/NNNN.eml, preceded
by X-Envelope-* headers with what the client said in MAIL and RCPT. plain
(the default) has no TLS, starttls requires STARTTLS before AUTH, tls
speaks TLS from the first byte (implicit TLS, port 465 style).
"""
import asyncio
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

outdir, user, password = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
mode = sys.argv[4] if len(sys.argv) > 4 else "plain"
context = None
if mode != "plain":
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[5], sys.argv[6])


class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(outdir, "%04d.eml" % self.count)
        head = "X-Envelope-From: %s\r\nX-Envelope-To: %s\r\nX-Authenticated: %s\r\n" % (
            envelope.mail_from, ",".join(envelope.rcpt_tos), bool(session.authenticated))
        with open(path + ".tmp", "wb") as f:
            f.write(head.encode())
            f.write(envelope.original_content)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (mechanism == "PLAIN" and isinstance(auth_data, LoginPassword)
          and auth_data.login == user and auth_data.password == password)
    # handled=False: the server answers 535 itself.
    return AuthResult(success=ok, handled=False)


async def main():
    handler = Handler()
    loop = asyncio.get_running_loop()
    if mode == "starttls":
        def factory():
            return SMTP(handler, authenticator=authenticate, auth_required=True,
                        auth_require_tls=True, tls_context=context, require_starttls=True)
        server = await loop.create_server(factory, "127.0.0.1", 0)
    else:
        def factory():
            return SMTP(handler, authenticator=authenticate, auth_required=True, auth_require_tls=False)
        server = await loop.create_server(factory, "127.0.0.1", 0,
                                          ssl=context if mode == "tls" else None)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
