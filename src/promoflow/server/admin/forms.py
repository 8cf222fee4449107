"""The promotion editor's form: fields named as in Engage, read into the API's create/update body, and every
refusal (of the wire model or of the service) turned into a sentence next to the field it is about."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from ...wire.engage import MultichannelPromotionCreate, is_web_url
from ..exceptions import PromoflowError
from .gateway import CHANNELS

VALUE_TYPES = ("PERCENT", "MONEY", "EXTERNALOFFER", "MANUAL", "SWIPE")
VALUE_TYPE_LABELS = {
    "PERCENT": "Discount in percent",
    "MONEY": "Monetary discount",
    "EXTERNALOFFER": "External promotion code",
    "MANUAL": "Manual instruction",
    "SWIPE": "Mobile swipe",
}
TEXT_FIELDS = ("name", "external_id", "start_date", "end_date", "assigned_amount", "assigned_unit", "heading",
               "description", "image_url", "link", "return_policy")  # fmt: skip
# The presentation's fields: the form's name, the words for it, its longest text (`wire.engage.Presentation`).
_PRESENTATION = {
    "heading": ("heading", "The heading", 450),
    "description": ("description", "The description", 4000),
    "imageUrl": ("image_url", "The image URL", 2000),
    "link": ("link", "The link", 2000),
}
NOT_A_WEB_URL = (
    "Use a full web address that starts with https:// (or http://), such as https://shop.example/spring."
)


@dataclass
class PromotionForm:
    """What the marketer typed (kept as typed, to show it again) and the errors per field."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def checked(self, channel: str) -> bool:
        return self.values.get(f"ch_{channel}") == "on"

    @classmethod
    def from_form(cls, form: FormData) -> PromotionForm:
        values: dict[str, str] = {}
        names = list(TEXT_FIELDS)
        for ch in CHANNELS:
            names += [
                f"ch_{ch}",
                f"{ch}_value_type",
                f"{ch}_value",
                f"{ch}_instruction",
                f"{ch}_local_values",
            ]
        for name in names:
            v = form.get(name)
            if isinstance(v, str):
                values[name] = v.replace("\r\n", "\n").strip()
        return cls(values)

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> PromotionForm:
        v = wire["validity"]
        av = v.get("assignedValidity") or {}
        pres = wire.get("presentation") or {}
        values = {
            "name": wire["name"], "external_id": wire.get("externalId") or "", "start_date": v["startDate"][:10],
            "end_date": (v.get("endDate") or "")[:10], "assigned_amount": str(av.get("amount") or ""),
            "assigned_unit": av.get("unit") or "Days", "heading": pres.get("heading") or "",
            "description": pres.get("description") or "", "image_url": pres.get("imageUrl") or "",
            "link": pres.get("link") or "", "return_policy": wire.get("returnPolicy") or "none",
        }  # fmt: skip
        for ch in wire["redemptionChannels"]:
            t = ch["type"]
            values[f"ch_{t}"] = "on"
            values[f"{t}_value_type"] = ch["valueType"]
            values[f"{t}_value"] = ch.get("value") or ""
            values[f"{t}_instruction"] = ch.get("instruction") or ""
            values[f"{t}_local_values"] = "\n".join(
                f"{lv['currency']} {lv['amount']}" for lv in ch.get("localValues") or []
            )
        return cls(values)

    # ------------------------------------------------------------------------------------------ to the wire

    def body(self, *, lenient: bool = False) -> dict[str, Any]:
        """The API's create body. Format problems go to ``errors`` (unless ``lenient``, for the live preview)."""
        err = (lambda name, text: None) if lenient else self.errors.setdefault
        if not self.get("name") and not lenient:
            err("name", "Give the promotion a name.")
        start = self._date("start_date", "Start date", err, required=not lenient)
        end = self._date("end_date", "End date", err, required=False)
        validity: dict[str, Any] = {"startDate": start, "endDate": end}
        amount = self.get("assigned_amount")
        if amount:
            if amount.isdigit() and 1 <= int(amount) <= 3650:
                unit = (
                    self.get("assigned_unit") if self.get("assigned_unit") in ("Days", "Months") else "Days"
                )
                validity["assignedValidity"] = {"unit": unit, "amount": int(amount)}
            else:
                err("assigned_amount", "Enter a whole number from 1 to 3650, or leave it empty.")
        channels = []
        for ch in CHANNELS:
            if not self.checked(ch):
                continue
            vt = self.get(f"{ch}_value_type")
            if vt not in VALUE_TYPES:
                err(f"{ch}_value_type", f"Choose the {ch} value type.")
                continue
            channels.append({
                "type": ch, "valueType": vt, "value": self.get(f"{ch}_value") or None,
                "instruction": self.get(f"{ch}_instruction") or None,
                "localValues": self._local_values(ch, err) or None,
            })  # fmt: skip
        if not channels and not lenient and "ch" not in self.errors:
            err("channels", "Choose at least one channel: POS, ECOM or OTHER.")
        for name in ("image_url", "link"):
            address = self.get(name)
            if address and not is_web_url(address):
                # The API's own rule (`wire.engage.WEB_URL`), said here in a marketer's words next to the field.
                err(name, NOT_A_WEB_URL)
        return {
            "name": self.get("name"),
            "externalId": self.get("external_id") or None,
            "validity": validity,
            "presentation": {"heading": self.get("heading") or None, "description": self.get("description") or None,
                             "imageUrl": self.get("image_url") or None, "link": self.get("link") or None},
            "redemptionChannels": channels,
            "returnPolicy": self.get("return_policy") if self.get("return_policy") == "reactivateOnReturn" else "none",
        }  # fmt: skip

    def _date(self, name: str, label: str, err: Any, *, required: bool) -> str | None:
        text = self.get(name)
        if not text:
            if required:
                err(name, f"Enter the {label.lower()}.")
            return None
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            err(name, f"Enter the {label.lower()} as a date, for example 2027-01-31.")
            return None

    def _local_values(self, ch: str, err: Any) -> list[dict[str, Any]]:
        out = []
        for line in self.get(f"{ch}_local_values").splitlines():
            if not line.strip():
                continue
            m = re.match(r"^\s*([A-Za-z]{3})\s*[:=]?\s*([0-9]+(?:[.,][0-9]+)?)\s*$", line)
            if not m:
                err(
                    f"{ch}_local_values",
                    "Write one value per line as currency and amount, for example EUR 5.50.",
                )
                continue
            try:
                out.append({"currency": m.group(1).upper(), "amount": Decimal(m.group(2).replace(",", "."))})
            except InvalidOperation:
                err(
                    f"{ch}_local_values",
                    "Write one value per line as currency and amount, for example EUR 5.50.",
                )
        return out

    def validated(self) -> MultichannelPromotionCreate | None:
        """The body as the API's model, or None with ``errors`` filled in."""
        body = self.body()
        if self.errors:
            return None
        try:
            return MultichannelPromotionCreate.model_validate(body)
        except ValidationError as exc:
            for e in exc.errors():
                self._model_error(e, body)
            if not self.errors:
                self.errors["form"] = "Some fields are not right; check them and save again."
            return None

    def _model_error(self, e: Any, body: dict[str, Any]) -> None:
        loc = [str(x) for x in e["loc"]]
        if loc[:1] == ["name"]:
            self.errors.setdefault("name", "The name is 1 to 450 characters.")
        elif loc[:1] == ["externalId"]:
            self.errors.setdefault("external_id", "The external id is at most 450 characters.")
        elif loc[:1] == ["presentation"] and len(loc) > 1 and loc[1] in _PRESENTATION:
            name, what, most = _PRESENTATION[loc[1]]
            self.errors.setdefault(name, f"{what} is at most {most:,} characters.")
        elif loc[:1] == ["redemptionChannels"] and len(loc) > 2:
            ch = body["redemptionChannels"][int(loc[1])]["type"]
            part = {"instruction": "instruction", "localValues": "local_values"}.get(loc[2], "value")
            text = (
                "The instruction is at most 512 characters."
                if part == "instruction"
                else "This is not valid."
            )
            self.errors.setdefault(f"{ch}_{part}", text)
        else:
            self.errors.setdefault("form", f"{'.'.join(loc)}: {e['msg']}")

    def service_error(self, exc: PromoflowError, body: dict[str, Any]) -> None:
        """A refusal from the promotion service, put next to its field in a marketer's words."""
        m = re.search(r"redemptionChannels\[(\d+)\]", exc.message)
        ch = body["redemptionChannels"][int(m.group(1))]["type"] if m else None
        code = exc.code
        if code == "InvalidPromotionValue" and ch:
            vt = body["redemptionChannels"][int(m.group(1))]["valueType"] if m else ""
            if "amount" in exc.message and "localValues" not in exc.message and vt != "MONEY":
                self.errors[f"{ch}_local_values"] = (
                    "Amounts are below 100,000,000,000,000 with at most 4 decimals."
                )
            else:
                self.errors[f"{ch}_value"] = {
                    "PERCENT": "Enter a whole percentage from 1 to 100.",
                    "MONEY": "Enter an amount above 0, with at most 4 decimals.",
                    "EXTERNALOFFER": "Enter the code of the web shop's or till's own promotion rule.",
                }.get(vt, "This value is not valid.")
        elif code == "InvalidValidity":
            if "before" in exc.message:
                self.errors["end_date"] = "The end date is before the start date."
            else:
                self.errors["start_date"] = "Use dates between 1900 and 2999."
        elif code == "ExternalIdInUse":
            self.errors["external_id"] = "Another promotion already uses this external id."
        elif code == "InvalidPayload" and "NUL" in exc.message:
            self.errors["form"] = "A field contains a character that cannot be stored; retype it."
        else:
            self.errors["form"] = exc.message
