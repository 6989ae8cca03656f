"""The LLM page: ask a question about a pasted context (answer and sources), and try the classifier.

Both forms go through the inference gateway to the services ``kfbox example llm`` deploys
(``review-qa`` and ``review-classifier`` in ``kubeflow-user-example-com``), exactly as an API
client would; the page only renders what they answer. ``/llm.json`` says which are deployed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kfbox.errors import InvalidInput, Unavailable
from kfbox.server.platform import Platform
from kfbox.ui import csrf
from kfbox.ui.render import Pages

NAMESPACE = "kubeflow-user-example-com"
QA, CLASSIFIER = "review-qa", "review-classifier"
MAX_CONTEXT = 100_000
EXAMPLE_CONTEXT = ("Lisinopril is used to treat high blood pressure. A common side effect is a dry cough. "
                   "It should be taken once a day, at the same time each day.")


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter()

    def deployed() -> dict[str, bool]:
        manager = platform.services.serving
        found = getattr(manager, "deployments", {}) or {}
        return {QA: (NAMESPACE, QA) in found, CLASSIFIER: (NAMESPACE, CLASSIFIER) in found}

    def page_data(**extra: Any) -> dict[str, Any]:
        return {"deployed": deployed(), "question": "What is a common side effect?", "context": EXAMPLE_CONTEXT,
                "review": "", "mode": "extractive", "answer": None, "classified": None, **extra}

    async def ask(request: Request, service: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx  # lazily: ~70 ms of CPU at server start otherwise
        token = platform.settings.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{str(request.base_url).rstrip('/')}/serving/{NAMESPACE}/{service}/v1/models/{service}:predict"
        async with httpx.AsyncClient(timeout=300, headers=headers) as client:
            reply = await client.post(url, json=body)
        if reply.status_code != 200:
            try:
                message = reply.json().get("error", reply.text)
            except ValueError:
                message = reply.text
            if reply.status_code == 404:
                raise Unavailable(f"{service} is not deployed. Deploy it with: kfbox example llm")
            raise InvalidInput(f"{service} answered HTTP {reply.status_code}: {message}")
        return dict(reply.json())

    @router.get("/llm", include_in_schema=False)
    @router.get("/llm.json", include_in_schema=False)
    @pages.page("llm.html", "Ask a question")
    def llm_page(request: Request) -> dict[str, Any]:
        return page_data()

    @router.post("/llm/ask", include_in_schema=False)
    @pages.action
    async def ask_action(request: Request) -> Response:
        form = await csrf.checked_form(request)
        question, context = str(form.get("question") or ""), str(form.get("context") or "")
        mode = str(form.get("mode") or "extractive")
        if len(context) > MAX_CONTEXT:
            raise InvalidInput(f"The context has {len(context)} characters; paste at most {MAX_CONTEXT}.")
        answer = await ask(request, QA, {"question": question, "context": context, "mode": mode})
        return pages.render(request, "llm.html", page_data(question=question, context=context, mode=mode,
                                                           answer=answer), "Ask a question")

    @router.post("/llm/classify", include_in_schema=False)
    @pages.action
    async def classify_action(request: Request) -> Response:
        form = await csrf.checked_form(request)
        review = str(form.get("review") or "").strip()
        if not review:
            raise InvalidInput("Type a review to classify, e.g. 'It worked and had no side effects.'")
        reply = await ask(request, CLASSIFIER, {"instances": [review], "return_labels": True})
        classified = {"label": reply["predictions"][0], "probabilities": reply.get("probabilities", [[]])[0]}
        return pages.render(request, "llm.html", page_data(review=review, classified=classified), "Ask a question")

    return router
