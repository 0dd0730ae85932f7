"""The one reader of a host's deploy history (tasks/history/write.yml writes it): the file's text
turned into a list of events, oldest first. The role (rollback, prune) and the tests read it
through this filter.

Lines written before the history was JSON are read as the same events:
  "TIME release=ID previous=ID|- by=USER result=R"   an activation
  "TIME migrate release=ID by=USER result=R"         a migration
"""
import json
import re

from ansible.errors import AnsibleFilterError

_ACTIVATE = re.compile(r"^(\S+) release=(\S+) previous=(?:-|(\S+)) by=(\S+) result=(\S+)$")
_MIGRATE = re.compile(r"^(\S+) migrate release=(\S+) by=(\S+) result=(\S+)$")


def django_asgi_history(text):
    events = []
    for number, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        old = _ACTIVATE.match(line)
        if old:
            events.append({"time": old[1], "event": "activate", "release": old[2], "previous": old[3] or "",
                           "by": old[4], "result": old[5]})
            continue
        old = _MIGRATE.match(line)
        if old:
            events.append({"time": old[1], "event": "migrate", "release": old[2], "previous": "",
                           "by": old[3], "result": old[4]})
            continue
        try:
            events.append(json.loads(line))
        except ValueError as exc:
            raise AnsibleFilterError(f"django_asgi_history: line {number} is not an event: {line[:120]!r}") from exc
    return events


class FilterModule:
    def filters(self):
        return {"django_asgi_history": django_asgi_history}
