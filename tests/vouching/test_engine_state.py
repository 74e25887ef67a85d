"""vouching.engine_state captures every attribute of the trust engine that records set: an attribute added to the
engine or to what it keeps must be put in a table of engine_state (and the snapshot's format bumped) or named as
derived, or this fails."""

from vouching.arrays import array_columns
from vouching.deviation import DeviationTest
from vouching.engine_state import _DERIVED, AGENT_FIELDS, DEVIATION_FIELDS, ENGINE_FIELDS
from vouching.evidence import EvidenceStore
from vouching.params import ScoringParams
from vouching.scoring import TrustEngine, _Agent
from vouching.vouches import VouchBook


def _others(store: object) -> set[str]:
    """A store's attributes that are not columns."""
    return set(vars(store)) - set(array_columns(store))


def test_every_engine_attribute_is_captured_or_derived():
    engine = TrustEngine("did:key:own", ["did:key:root"])
    assert set(vars(engine)) == set(ENGINE_FIELDS) | _DERIVED
    assert not set(ENGINE_FIELDS) & _DERIVED


def test_every_attribute_beside_the_columns_is_captured():
    params = ScoringParams()
    assert set(_Agent.__slots__) == {*AGENT_FIELDS, "did", "vouches", "cache"}
    assert _others(DeviationTest(params)) == {"params", *DEVIATION_FIELDS}
    assert _others(EvidenceStore(params)) == {"params", "k_good", "k_bad", "k_report"}
    assert _others(VouchBook(params.basis_weights)) == {"_basis_weights", "by_id", "_pending", "_latest",
                                                        "org_vouches"}
