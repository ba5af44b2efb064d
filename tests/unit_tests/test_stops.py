from langchain_pad.engine.stops import StopMatcher


def feed(matcher: StopMatcher, pieces: list[str]) -> tuple[str, bool]:
    released = ""
    for piece in pieces:
        text, stopped = matcher.push(piece)
        released += text
        if stopped:
            return released, True
    return released + matcher.flush(), False


def test_no_stops_passes_text_through():
    assert feed(StopMatcher([]), ["a", "b"]) == ("ab", False)


def test_stop_spanning_pieces_is_cut_and_not_returned():
    assert feed(StopMatcher(["END"]), ["hello E", "N", "D and more"]) == ("hello ", True)


def test_possible_prefix_is_held_back_then_released():
    matcher = StopMatcher(["STOP"])
    assert matcher.push("abc ST") == ("abc ", False)
    assert matcher.push("ART") == ("START", False)


def test_earliest_stop_wins():
    assert feed(StopMatcher(["zz", "b"]), ["a", "bzz"]) == ("a", True)


def test_stop_inside_one_piece():
    assert feed(StopMatcher(["\n\n"]), ["line one\n\nline two"]) == ("line one", True)


def test_held_text_flushed_when_stream_ends():
    matcher = StopMatcher(["<end>"])
    assert matcher.push("done <en") == ("done ", False)
    assert matcher.flush() == "<en"


def test_multibyte_stop():
    assert feed(StopMatcher(["日本"]), ["今日は", "日", "本語"]) == ("今日は", True)
