"""The synthetic world: countries, cardholders (users), cards, devices and merchants.

Everything here is drawn once per `generate` call from a seeded numpy Generator, so the
same seed gives the same world. Cards, users and merchants are numbered; their string
ids (`card-17`, `user-4`, `merch-230`) are derived from the numbers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    lat: float
    lon: float
    radius: float  # merchants sit within +-radius degrees of latitude around (lat, lon)
    weight: float  # relative share of cardholders living there


COUNTRIES: tuple[Country, ...] = (
    Country("US", 39.8, -98.6, 7.0, 20.0),
    Country("CA", 45.4, -75.7, 3.0, 4.0),
    Country("MX", 19.4, -99.1, 3.0, 3.0),
    Country("BR", -15.8, -47.9, 5.0, 4.0),
    Country("AR", -34.6, -58.4, 3.0, 2.0),
    Country("GB", 52.5, -1.5, 1.5, 6.0),
    Country("IE", 53.3, -7.5, 0.8, 1.0),
    Country("FR", 46.8, 2.4, 2.0, 6.0),
    Country("DE", 51.0, 10.4, 1.8, 7.0),
    Country("NL", 52.2, 5.3, 0.5, 3.0),
    Country("BE", 50.6, 4.6, 0.4, 2.0),
    Country("LU", 49.7, 6.1, 0.15, 0.5),
    Country("CH", 46.8, 8.2, 0.4, 2.0),
    Country("AT", 47.6, 14.1, 0.6, 2.0),
    Country("IT", 42.8, 12.6, 2.0, 5.0),
    Country("ES", 40.2, -3.6, 2.0, 5.0),
    Country("PT", 39.6, -8.2, 1.0, 2.0),
    Country("PL", 52.1, 19.4, 1.5, 3.0),
    Country("CZ", 49.8, 15.5, 0.6, 1.5),
    Country("SE", 60.1, 15.6, 3.0, 2.0),
    Country("NO", 61.0, 9.5, 2.0, 1.0),
    Country("DK", 55.9, 10.0, 0.6, 1.0),
    Country("FI", 62.0, 25.7, 2.0, 1.0),
    Country("RU", 55.75, 37.6, 4.0, 2.0),
    Country("TR", 39.0, 35.2, 2.0, 2.0),
    Country("IN", 22.0, 79.0, 5.0, 4.0),
    Country("CN", 33.0, 110.0, 6.0, 4.0),
    Country("JP", 36.2, 138.3, 2.0, 4.0),
    Country("KR", 36.5, 127.8, 0.8, 2.0),
    Country("SG", 1.35, 103.8, 0.05, 1.0),
    Country("AU", -33.0, 146.0, 4.0, 2.0),
    Country("NZ", -41.3, 174.8, 1.5, 0.5),
    Country("ZA", -28.5, 25.0, 3.0, 1.0),
    Country("NG", 9.1, 7.5, 2.0, 1.0),
    Country("EG", 28.0, 30.8, 2.0, 1.0),
    Country("AE", 24.4, 54.4, 0.6, 1.0),
)

# Land neighbours (a drive or a short flight apart): used for plausible-travel near misses.
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "US": ("CA", "MX"),
    "CA": ("US",),
    "MX": ("US",),
    "GB": ("IE", "FR"),
    "IE": ("GB",),
    "FR": ("BE", "DE", "CH", "ES", "LU", "IT"),
    "DE": ("NL", "BE", "FR", "CH", "AT", "CZ", "PL", "DK", "LU"),
    "NL": ("BE", "DE"),
    "BE": ("NL", "FR", "DE", "LU"),
    "LU": ("BE", "FR", "DE"),
    "CH": ("FR", "DE", "AT", "IT"),
    "AT": ("DE", "CH", "IT", "CZ"),
    "IT": ("FR", "CH", "AT"),
    "ES": ("PT", "FR"),
    "PT": ("ES",),
    "PL": ("DE", "CZ"),
    "CZ": ("DE", "AT", "PL"),
    "SE": ("NO", "DK", "FI"),
    "NO": ("SE",),
    "DK": ("DE", "SE"),
    "FI": ("SE",),
    "AR": ("BR",),
    "BR": ("AR",),
}


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in km."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


class World:
    """Countries, users, cards and merchants, as parallel arrays indexed by number."""

    def __init__(self, n_cards: int, rng: np.random.Generator) -> None:
        self.codes = [c.code for c in COUNTRIES]
        self.code_index = {code: i for i, code in enumerate(self.codes)}
        n_c = len(COUNTRIES)
        self.n_countries = n_c
        cw = np.array([c.weight for c in COUNTRIES])
        self.country_p: npt.NDArray[np.float64] = cw / cw.sum()

        # Users: ~0.8 per card; every user has at least one card.
        n_users = max(1, (n_cards * 4) // 5)
        self.user_home: npt.NDArray[np.int64] = rng.choice(n_c, size=n_users, p=self.country_p)
        self.user_devices: npt.NDArray[np.int64] = rng.integers(1, 4, size=n_users)
        self.user_weight: npt.NDArray[np.float64] = rng.gamma(2.0, 1.0, size=n_users)
        self.n_base_users = n_users

        extra = rng.integers(0, n_users, size=max(0, n_cards - n_users))
        self.card_user: list[int] = list(range(min(n_cards, n_users))) + extra.tolist()
        self.card_weight: list[float] = rng.gamma(1.5, 1.0, size=n_cards).tolist()
        self.n_base_cards = n_cards

        # Merchants, sorted by country, one at least per country.
        n_m = int(min(20_000, max(100, n_cards // 25)))
        m_country = np.concatenate(
            [np.arange(n_c), rng.choice(n_c, size=n_m - n_c, p=self.country_p)]
        )
        m_country.sort()
        radius = np.array([c.radius for c in COUNTRIES])
        clat = np.array([c.lat for c in COUNTRIES])
        clon = np.array([c.lon for c in COUNTRIES])
        r = radius[m_country]
        lat = clat[m_country] + rng.uniform(-1.0, 1.0, size=n_m) * r
        lon = clon[m_country] + rng.uniform(-1.0, 1.0, size=n_m) * r * 1.4
        self.m_country: npt.NDArray[np.int64] = m_country
        self.m_lat: npt.NDArray[np.float64] = np.round(lat, 4)
        self.m_lon: npt.NDArray[np.float64] = np.round(lon, 4)
        self.m_count: npt.NDArray[np.int64] = np.bincount(m_country, minlength=n_c)
        self.m_start: npt.NDArray[np.int64] = np.concatenate(
            [[0], np.cumsum(self.m_count)[:-1]]
        ).astype(np.int64)
        self.n_merchants = n_m
        self.m_names = [f"merch-{i}" for i in range(n_m)]
        self._m_lat_list: list[float] = self.m_lat.tolist()
        self._m_lon_list: list[float] = self.m_lon.tolist()

    # --- names -----------------------------------------------------------------------
    @property
    def n_cards(self) -> int:
        return len(self.card_user)

    @property
    def n_users(self) -> int:
        return len(self.user_home)

    @staticmethod
    def card_name(i: int) -> str:
        return f"card-{i}"

    @staticmethod
    def user_name(i: int) -> str:
        return f"user-{i}"

    # --- scalar helpers for the incident injectors -------------------------------------
    def add_card(self, user: int) -> int:
        """A card that only incidents use (when `n_keys` is too small to keep them apart)."""
        self.card_user.append(user)
        self.card_weight.append(0.0)
        return len(self.card_user) - 1

    def add_user(self, home: int) -> int:
        """A user that only incidents use (see `add_card`)."""
        self.user_home = np.append(self.user_home, np.int64(home))
        self.user_devices = np.append(self.user_devices, np.int64(1))
        self.user_weight = np.append(self.user_weight, 0.0)
        return len(self.user_home) - 1

    def home_of_card(self, card: int) -> int:
        return int(self.user_home[self.card_user[card]])

    def merchant_in(self, country: int, r: random.Random) -> int:
        return int(self.m_start[country]) + r.randrange(int(self.m_count[country]))

    def merchant_pos(self, merchant: int) -> tuple[float, float]:
        return self._m_lat_list[merchant], self._m_lon_list[merchant]

    def country_distance(self, a: int, b: int) -> float:
        ca, cb = COUNTRIES[a], COUNTRIES[b]
        return distance_km(ca.lat, ca.lon, cb.lat, cb.lon)

    def foreign_country(self, home: int, r: random.Random) -> int:
        c = r.choices(range(self.n_countries), weights=self.country_p.tolist())[0]
        return c if c != home else (home + 1 + r.randrange(self.n_countries - 1)) % self.n_countries

    def card_txn(
        self,
        card: int,
        ts: int,
        amount: float,
        *,
        channel: str,
        merchant: int,
        status: str = "approved",
    ) -> dict[str, Any]:
        """A purchase event (without `id`) in the same key order as background purchases."""
        user = self.card_user[card]
        country = int(self.m_country[merchant])
        return {
            "ts": ts,
            "stream": "transactions",
            "type": "purchase",
            "card_id": self.card_name(card),
            "user_id": self.user_name(user),
            "amount": round(amount, 2),
            "merchant": self.m_names[merchant],
            "channel": channel,
            "country": self.codes[country],
            "lat": self._m_lat_list[merchant],
            "lon": self._m_lon_list[merchant],
            "home_country": self.codes[int(self.user_home[user])],
            "status": status,
        }
