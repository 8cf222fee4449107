"""The published third-party client `voyado-engage-client` (module `voyado_engage_sdk`), used unmodified,
against a real `promoflow serve` process on SQLite and on PostgreSQL.

The SDK sends the key in an `apiKey` header, bodies as JSON, and parses answers strictly: its models are built
with ``cls(**json)``, so a response field it does not know makes it raise. These tests therefore also pin the
exact response shapes of the Engage operations.

Contacts: v2 answers are Engage's `IApiContact` shape (the SDK rejects A11's top-level `contactType`, which
therefore appears on v3 answers only).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from voyado_engage_sdk import VoyadoEngageSdk
from voyado_engage_sdk.models.api_promotion_model import ApiPromotionModel
from voyado_engage_sdk.models.base import BaseModel as SdkModel
from voyado_engage_sdk.models.i_api_contact import IApiContact
from voyado_engage_sdk.models.multichannel_base_promotion_model import MultichannelBasePromotionModel
from voyado_engage_sdk.models.multichannel_promotion_model import MultichannelPromotionModel
from voyado_engage_sdk.models.multichannel_promotion_redemption_channel_model import (
    MultichannelPromotionRedemptionChannelModel,
)
from voyado_engage_sdk.models.promotion_basic_presentation_model import PromotionBasicPresentationModel
from voyado_engage_sdk.models.promotion_validity_model import PromotionValidityModel
from voyado_engage_sdk.models.redeem_body_model import RedeemBodyModel
from voyado_engage_sdk.models.utils.json_map import JsonMap
from voyado_engage_sdk.net.transport.request_error import RequestError

from ._support import GUID_TEXT, new_contact

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def _today() -> date:
    # The server process runs on the real clock; its tenants evaluate dates in Europe/Stockholm.
    return datetime.now(STOCKHOLM).date()


@pytest.fixture
def sdk(live: Any, live_tenant: dict[str, Any]) -> VoyadoEngageSdk:
    return VoyadoEngageSdk(api_key=live_tenant["apiKey"], base_url=live.base_url)


@pytest.fixture
def http(live: Any, live_tenant: dict[str, Any]) -> Any:
    with live.client(live_tenant) as client:
        yield client


def _channel(type_: str, value_type: str, value: str, instruction: str | None = None) -> Any:
    return MultichannelPromotionRedemptionChannelModel(
        type_=type_, value_type=value_type, value=value, instruction=instruction
    )


def _create(
    sdk: VoyadoEngageSdk, *channels: Any, external_id: str | None = None
) -> MultichannelPromotionModel:
    today = _today()
    body = MultichannelBasePromotionModel(
        name="20% off tees",
        external_id=external_id or f"EXT-{uuid.uuid4().hex[:8]}",
        validity=PromotionValidityModel(
            start_date=(today - timedelta(days=3)).isoformat(),
            end_date=(today + timedelta(days=30)).isoformat(),
        ),
        presentation=PromotionBasicPresentationModel(
            heading="20% off", description="Tees only", link="https://x.test"
        ),
        redemption_channels=list(channels) or [_channel("POS", "PERCENT", "20", "Scan the card")],
    )
    return sdk.promotions.multichannel_promotions_create(body)


def _activate(http: httpx.Client, promotion_id: str) -> dict[str, Any]:
    # Activation is a promoflow extension (Engage activates in its UI), so the SDK has no method for it.
    r = http.post(f"/api/v2/promotions/multichannels/{promotion_id}/activate")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_create_and_get_by_id_and_external_id(sdk: VoyadoEngageSdk, http: httpx.Client) -> None:
    created = _create(sdk, external_id="TEES-20")
    assert isinstance(created, MultichannelPromotionModel)
    assert re.match(GUID_TEXT, created.id_)
    assert created.status == "Draft"
    assert created.name == "20% off tees"
    assert created.external_id == "TEES-20"
    today = _today()
    assert created.validity.start_date.startswith((today - timedelta(days=3)).isoformat() + "T00:00:00")
    assert created.presentation.heading == "20% off"
    assert [(c.type_, c.value_type, c.value) for c in created.redemption_channels] == [
        ("POS", "PERCENT", "20")
    ]

    by_id = sdk.promotions.multichannel_promotions_get_by_id(created.id_)
    by_external = sdk.promotions.multichannel_promotions_get_by_external_id("TEES-20")
    assert by_id._map() == created._map() == by_external._map()

    assert _activate(http, created.id_)["status"] == "Active"
    assert sdk.promotions.multichannel_promotions_get_by_id(created.id_).status == "Active"


def test_update_validity_and_delete_a_draft(sdk: VoyadoEngageSdk, http: httpx.Client) -> None:
    draft = _create(sdk, external_id="DRAFT-1")
    draft.name = "renamed"
    updated = sdk.promotions.multichannel_promotions_update(draft, draft.id_)
    assert updated.name == "renamed" and updated.status == "Draft"

    start, end = _today() + timedelta(days=1), _today() + timedelta(days=9)
    validity = PromotionValidityModel(start_date=start.isoformat(), end_date=end.isoformat())
    sdk.promotions.multichannel_promotions_update_validity(validity, draft.id_)
    by_id = sdk.promotions.multichannel_promotions_get_validity_by_id(draft.id_)
    by_external = sdk.promotions.multichannel_promotions_get_by_validity_external_id("DRAFT-1")
    assert by_id._map() == by_external._map()
    assert by_id.start_date.startswith(start.isoformat()) and by_id.end_date.startswith(end.isoformat())

    assert sdk.promotions.multichannel_promotions_delete_by_external_id("DRAFT-1").status_code == "OK"
    other = _create(sdk)
    assert sdk.promotions.multichannel_promotions_delete_by_id(other.id_).status_code == "OK"
    for gone in (draft.id_, other.id_):
        assert http.get(f"/api/v2/promotions/multichannels/{gone}").status_code == 404


def test_get_unknown_promotion_is_a_404_request_error(sdk: VoyadoEngageSdk) -> None:
    with pytest.raises(RequestError) as caught:
        sdk.promotions.multichannel_promotions_get_by_id(str(uuid.uuid4()))
    assert caught.value.status == 404
    assert caught.value.response.body["errorCode"] == "PromotionNotFound"


def test_assign_list_with_and_without_channel_filter(sdk: VoyadoEngageSdk, http: httpx.Client) -> None:
    contact_id = new_contact(http)["id"]
    both = _create(
        sdk, _channel("POS", "PERCENT", "20"), _channel("ECOM", "EXTERNALOFFER", "ECOM-CAMPAIGN-1337")
    )
    ecom_only = _create(sdk, _channel("ECOM", "MONEY", "50"))
    for promo in (both, ecom_only):
        _activate(http, promo.id_)

    first = sdk.contacts.assign_promotion_assign(contact_id, both.id_)
    second = sdk.contacts.assign_promotion_assign(contact_id, ecom_only.id_)
    assert first["promotionId"] == both.id_ and first["redeemed"] is False
    assert re.match(GUID_TEXT, first["id"]) and first["id"] != both.id_

    everything = sdk.contacts.offer_promotions_get_promotions_for_contact(contact_id)
    assert all(isinstance(p, ApiPromotionModel) for p in everything)
    assert [p.id_ for p in everything] == [first["id"], second["id"]]
    pos = sdk.contacts.offer_promotions_get_promotions_for_contact(contact_id, redemption_channel_type="POS")
    assert [p.id_ for p in pos] == [first["id"]]
    ecom = sdk.contacts.offer_promotions_get_promotions_for_contact(
        contact_id, redemption_channel_type="ECOM"
    )
    assert [p.id_ for p in ecom] == [first["id"], second["id"]]

    item = pos[0]
    assert item.promotion_id == both.id_
    assert item.type_ == "Multichannel"
    assert item.redeemed is False
    assert item.expires_on == (_today() + timedelta(days=30)).isoformat() + "T23:59:59" + item.expires_on[19:]
    values = {c.type_: (c.value_type, c.value) for c in item.redemption_channels}
    # Read typing: PERCENT is a JSON integer, others a string; MONEY an amount with the tenant's currency.
    assert values == {"POS": ("PERCENT", 20), "ECOM": ("EXTERNALOFFER", "ECOM-CAMPAIGN-1337")}
    money = ecom[1].redemption_channels[0]
    assert (money.value_type, money.value) == ("MONEY", {"amount": 50, "currency": "SEK"})


def test_redeem_through_both_v2_methods(sdk: VoyadoEngageSdk, http: httpx.Client) -> None:
    contact_id = new_contact(http)["id"]
    promo = _create(sdk, _channel("POS", "PERCENT", "20"), _channel("ECOM", "PERCENT", "20"))
    _activate(http, promo.id_)
    a1 = sdk.contacts.assign_promotion_assign(contact_id, promo.id_)["id"]
    a2 = sdk.contacts.assign_promotion_assign(contact_id, promo.id_)["id"]

    by_contact = sdk.contacts.offer_promotions_redeem(
        RedeemBodyModel(redemption_channel="POS"), contact_id, a1
    )
    assert by_contact["id"] == a1 and by_contact["redeemed"] is True and by_contact["redeemedOn"]
    by_code = sdk.promotions.offer_promotions_redeem_by_promotion_id(
        RedeemBodyModel(redemption_channel="ECOM"), a2
    )
    assert by_code["id"] == a2 and by_code["redeemed"] is True

    assert sdk.contacts.offer_promotions_get_promotions_for_contact(contact_id) == []
    with pytest.raises(RequestError) as caught:
        sdk.promotions.offer_promotions_redeem_by_promotion_id(RedeemBodyModel(redemption_channel="POS"), a1)
    assert caught.value.status == 409
    assert caught.value.response.body["errorCode"] == "PromotionAlreadyRedeemed"
    with pytest.raises(RequestError) as caught:
        sdk.contacts.offer_promotions_redeem(RedeemBodyModel(redemption_channel="POS"), contact_id, a2)
    assert caught.value.status == 409
    assert caught.value.response.body["errorCode"] == "PromotionAlreadyRedeemed"


def test_count_and_look_up_contact_id(sdk: VoyadoEngageSdk, http: httpx.Client) -> None:
    assert sdk.contacts.contacts_v_count() == 0
    ada = new_contact(http, email="ada@example.com", mobilePhone="+46701234567")
    new_contact(http)
    assert sdk.contacts.contacts_v_count() == 2

    assert sdk.contacts.contact_overview_get_contact_id_async(email="ADA@example.com") == ada["id"]
    assert (
        sdk.contacts.contact_overview_get_contact_id_async(contact_type="Member", email="ada@example.com")
        == ada["id"]
    )
    assert sdk.contacts.contact_overview_get_contact_id_async(mobile_phone="+46701234567") == ada["id"]
    member_number = ada["attributes"]["memberNumber"]
    assert sdk.contacts.contact_overview_get_contact_id_async(custom_key=member_number) == ada["id"]
    assert sdk.contacts.contact_overview_get_contact_id_async(any="ada@example.com") == ada["id"]
    with pytest.raises(RequestError) as caught:
        sdk.contacts.contact_overview_get_contact_id_async(email="nobody@example.com")
    assert caught.value.status == 404
    assert caught.value.response.body["errorCode"] == "ContactNotFound"


@JsonMap({})
class _ContactChanges(SdkModel):
    """The update body. The SDK types it as `any`, and its `cast_models` decorator calls ``any(**body)`` on a
    dict, so a plain dict never leaves the SDK; an SDK model is sent as its ``_map()``: the flat JSON object."""

    def __init__(self, **attributes: Any) -> None:
        vars(self).update(attributes)


def test_update_contact(sdk: VoyadoEngageSdk, http: httpx.Client) -> None:
    """The SDK's update is applied with the A11 partial-update rules, and its answer parses: v2 contacts are
    Engage's `IApiContact` (the type in `meta.contactType`; v3 adds A11's top-level `contactType`)."""
    contact_id = new_contact(http, email="ada@example.com", firstName="Ada", city="Lund")["id"]
    updated = sdk.contacts.contacts_v_update_contact_post(
        _ContactChanges(lastName="Lovelace", city="", favouriteColour="green"), contact_id
    )
    assert isinstance(updated, IApiContact)
    assert updated.id_ == contact_id and updated.meta["contactType"] == "Member"
    assert updated.attributes["lastName"] == "Lovelace" and updated.attributes["firstName"] == "Ada"
    assert "city" not in updated.attributes and "favouriteColour" not in updated.attributes
    assert sdk.contacts.contacts_v_get_contact_by_id(contact_id).attributes == updated.attributes
    assert http.get(f"/api/v3/contacts/{contact_id}").json()["contactType"] == "Member"
