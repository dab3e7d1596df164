from service.settings import Settings, mask_url, parse_redis_url


def test_mask_url_hides_password():
    assert mask_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"


def test_mask_url_keeps_plain_url():
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_none_means_no_redis():
    assert parse_redis_url("none") is None
    assert parse_redis_url("  ") is None
    assert Settings(redis_url="off").redis_url is None
