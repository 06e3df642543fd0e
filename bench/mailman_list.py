"""Run by Mailman's own interpreter, never imported by mailflow's: creates
the benchmark's list in a fresh Mailman site, ``python mailman_list.py
MAILMAN_CFG LIST COUNT``.

The senders are the corpus's ``delegateN@example.org``, subscribed as
members whose posts are held (``moderation_action = hold``): the
counterpart of mailflow's registered participants, whose every submission
opens a case for review. Members are added straight through Mailman's own
API (no confirmation, no welcome message), so the outgoing sink sees only
what the submissions cause."""

import sys

from mailman.app.lifecycle import create_list
from mailman.app.membership import add_member
from mailman.config import config
from mailman.core.initialize import initialize
from mailman.interfaces.action import Action
from mailman.interfaces.domain import IDomainManager
from mailman.interfaces.member import DeliveryMode
from mailman.interfaces.subscriptions import RequestRecord
from zope.component import getUtility


def main() -> None:
    initialize(sys.argv[1])
    address, count = sys.argv[2], int(sys.argv[3])
    getUtility(IDomainManager).add(address.partition("@")[2])
    mlist = create_list(address, owners=[f"moderator@{address.partition('@')[2]}"])
    mlist.send_welcome_message = False
    # Mailman's defaults, stated because the comparison rests on them: the
    # sender is told the post awaits approval, the moderators get a notice
    # with the post attached.
    mlist.respond_to_post_requests = True
    mlist.admin_immed_notify = True
    for n in range(count):
        record = RequestRecord(
            f"delegate{n}@example.org", f"Delegate {n}", DeliveryMode.regular, "en"
        )
        add_member(mlist, record).moderation_action = Action.hold
    config.db.commit()


if __name__ == "__main__":
    main()
