"""An example ASGI middleware, listed in django_asgi_asgi_middleware by the demo and the tests.

It adds a response header naming itself, so a test can see that it wraps Django's application.
"""


class ExampleHeaderMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-example-middleware", b"ExampleHeaderMiddleware"))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_header)
