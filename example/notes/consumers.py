"""The example's WebSocket endpoint (Django Channels): an echo, and a room every client joins.

A text message comes back as {"echo": text, "release": ...}; one that starts with "broadcast:" goes
to every client in the room through the channel layer as {"broadcast": rest, "release": ...}.
"""
import json
import os

from channels.generic.websocket import AsyncWebsocketConsumer

ROOM = "room"


def _release():
    return os.environ.get("DJANGO_ASGI_RELEASE", "unknown")


class EchoConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        if self.channel_layer is not None:
            await self.channel_layer.group_add(ROOM, self.channel_name)
        await self.accept()
        # Where the connection came from, as the server and the role's layers worked it out.
        client = (self.scope.get("client") or [""])[0]
        await self.send(json.dumps({"hello": True, "release": _release(), "client": client,
                                    "scheme": self.scope.get("scheme", "ws")}))

    async def disconnect(self, code):
        if self.channel_layer is not None:
            await self.channel_layer.group_discard(ROOM, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        text = text_data or ""
        if text.startswith("broadcast:") and self.channel_layer is not None:
            await self.channel_layer.group_send(ROOM, {"type": "room.message", "text": text[len("broadcast:"):]})
        else:
            await self.send(json.dumps({"echo": text, "release": _release()}))

    async def room_message(self, event):
        await self.send(json.dumps({"broadcast": event["text"], "release": _release()}))
