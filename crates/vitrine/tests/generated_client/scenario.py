"""Drives Vitrine through a Python client generated from openapi.json by openapi-python-client,
the way an API consumer would: register a customer, add a card, list a product for that seller,
find it in the catalog, reserve some of its stock. Every call must parse into the documented
model; anything else (a Problem, an undocumented status, a body the client cannot read) fails.

Usage: python scenario.py BASE_URL   (the generated package `vitrine_client` on PYTHONPATH, an
admin bearer token in VITRINE_TOKEN)
"""

import os
import sys
import uuid

from vitrine_client import AuthenticatedClient
from vitrine_client.api.customers import customers_create, customers_get
from vitrine_client.api.payment_methods import payment_methods_add, payment_methods_list
from vitrine_client.api.products import products_create, products_get, products_list
from vitrine_client.api.reservations import reservations_create
from vitrine_client.models import (
    AddressIn,
    CardIn,
    CustomerIn,
    CustomerOut,
    ItemIn,
    MoneyDto,
    PaymentMethodIn,
    PaymentMethodList,
    PaymentMethodOut,
    PaymentMethodType,
    ProductIn,
    ProductList,
    ProductOut,
    ReservationIn,
    ReservationOut,
)


def expect(response, status, model):
    """The response has `status` and its body parsed into `model`."""
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(
            f"expected {status} {model.__name__}, got {response.status_code}: "
            f"{response.content[:300]!r}"
        )
    return response.parsed


def main():
    client = AuthenticatedClient(base_url=sys.argv[1], token=os.environ["VITRINE_TOKEN"])

    customer = expect(
        customers_create.sync_detailed(
            client=client,
            idempotency_key=str(uuid.uuid4()),
            body=CustomerIn(
                cnpj="12.ABC.345/01DE-35",
                legal_name="Comercial Exemplo Ltda",
                email="compras@exemplo.com.br",
                phone="(11) 98765-4321",
                address=AddressIn(
                    street="Av. Paulista",
                    number="1000",
                    district="Bela Vista",
                    city="São Paulo",
                    state="SP",
                    postal_code="01310-100",
                ),
            ),
        ),
        201,
        CustomerOut,
    )
    assert customer.cnpj == "12ABC34501DE35", customer.cnpj
    again = expect(customers_get.sync_detailed(customer.id, client=client), 200, CustomerOut)
    assert again.id == customer.id

    card = expect(
        payment_methods_add.sync_detailed(
            customer.id,
            client=client,
            body=PaymentMethodIn(
                type_=PaymentMethodType.CARD,
                card=CardIn(
                    number="4111 1111 1111 1111",
                    holder_name="MARIA SOUZA",
                    exp_month=12,
                    exp_year=2031,
                ),
            ),
        ),
        201,
        PaymentMethodOut,
    )
    methods = expect(
        payment_methods_list.sync_detailed(customer.id, client=client), 200, PaymentMethodList
    )
    assert [m.id for m in methods.items] == [card.id]

    product = expect(
        products_create.sync_detailed(
            client=client,
            idempotency_key=str(uuid.uuid4()),
            body=ProductIn(
                seller_id=str(customer.id),
                sku="CAFE-500G",
                name="Café torrado 500 g",
                category="alimentos",
                price=MoneyDto(amount=1990, currency="BRL"),
                initial_stock=10,
            ),
        ),
        201,
        ProductOut,
    )
    listed = expect(
        products_list.sync_detailed(client=client, seller_id=str(customer.id)), 200, ProductList
    )
    assert [p.id for p in listed.items] == [product.id]

    reservation = expect(
        reservations_create.sync_detailed(
            client=client,
            body=ReservationIn(items=[ItemIn(product_id=str(product.id), quantity=4)], ttl_seconds=600),
        ),
        201,
        ReservationOut,
    )
    assert reservation.status == "pending", reservation.status
    held = expect(products_get.sync_detailed(product.id, client=client), 200, ProductOut)
    assert (held.stock.on_hand, held.stock.reserved) == (10, 4), held.stock
    print("scenario passed: customer, card, product, reservation")


if __name__ == "__main__":
    main()
