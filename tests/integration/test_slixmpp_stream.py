"""Integration test: Debian's slixmpp, a real XMPP client library, opens a
stream to a real starling process, reads the stream features and closes.

Authentication arrives with issue 5; until then the check is that a real
client accepts Starling's stream framing: it sees the stream open, processes
the features to the end ("stream_negotiated"), and sees a clean close when it
ends its stream.
"""
import argparse
import asyncio
import logging
import sys
import unittest

import slixmpp

from starling_process import Starling

BINARY = None


class SlixmppStreamTests(unittest.TestCase):
    def run_client(self, port, domain):
        client = slixmpp.ClientXMPP(f"alice@{domain}/test", "unused")
        client.enable_plaintext = True
        events = []
        for name in ("connected", "stream_negotiated", "session_start", "disconnected",
                     "stream_error"):
            client.add_event_handler(name, lambda *args, n=name: events.append(n))
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def scenario():
            client.connect(("127.0.0.1", port), force_starttls=False, disable_starttls=True)
            for _ in range(100):
                if "stream_negotiated" in events or "disconnected" in events:
                    break
                await asyncio.sleep(0.05)
            client.disconnect()
            for _ in range(100):
                if "disconnected" in events:
                    break
                await asyncio.sleep(0.05)

        loop.run_until_complete(scenario())
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        return events, client

    def test_stream_negotiated_and_closed_cleanly(self):
        with Starling(BINARY, reactors=2) as server:
            events, client = self.run_client(server.port, "localhost")
            self.assertEqual(events[:2], ["connected", "stream_negotiated"])
            self.assertIn("disconnected", events)
            self.assertNotIn("session_start", events)
            self.assertEqual(len(client.stream_id), 32)

    def test_unknown_domain_is_refused(self):
        with Starling(BINARY, reactors=2) as server:
            events, _ = self.run_client(server.port, "example.org")
            self.assertIn("stream_error", events)
            self.assertNotIn("stream_negotiated", events)


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    arguments = argparse.ArgumentParser()
    arguments.add_argument("--starling", required=True)
    options, rest = arguments.parse_known_args()
    BINARY = options.starling
    unittest.main(argv=[sys.argv[0], "-v", *rest])
