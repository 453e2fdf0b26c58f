"""Office hours: when clerks answer. Outside them tickets wait and the citizen is told when to expect a reply.

Format (GOVBOT_OFFICE_HOURS): `mon-fri 09:00-12:00,13:30-17:30; sat 09:00-12:00` — day ranges, then time ranges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAY_NAMES = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]


def _parse_time(text: str) -> time:
    hh, mm = text.strip().split(":")
    return time.max if (int(hh), int(mm)) == (24, 0) else time(int(hh), int(mm))


@dataclass(frozen=True)
class OfficeHours:
    spans: dict[int, tuple[tuple[time, time], ...]]  # weekday → (start, end) ranges
    tz: ZoneInfo

    @classmethod
    def parse(cls, spec: str, tz: str = "Asia/Shanghai") -> OfficeHours:
        spans: dict[int, list[tuple[time, time]]] = {}
        try:
            for part in filter(None, (p.strip() for p in spec.split(";"))):
                days, _, ranges = part.partition(" ")
                first, _, last = days.lower().partition("-")
                a, b = DAYS.index(first), DAYS.index(last or first)
                if a > b:
                    raise ValueError(f"{days}: the first day comes after the last")
                for day in range(a, b + 1):
                    for rng in ranges.split(","):
                        start, _, end = rng.partition("-")
                        begin, finish = _parse_time(start), _parse_time(end)
                        if begin >= finish:
                            raise ValueError(f"{rng}: the start is not before the end")
                        spans.setdefault(day, []).append((begin, finish))
        except (ValueError, IndexError) as exc:
            raise ValueError(f"GOVBOT_OFFICE_HOURS“{spec}”无法解析 (expected e.g. 'mon-fri 09:00-17:00'): {exc}") from exc
        return cls({d: tuple(sorted(r)) for d, r in spans.items()}, ZoneInfo(tz))

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.tz)
        return any(start <= local.time() < end for start, end in self.spans.get(local.weekday(), ()))

    def next_open(self, now: datetime) -> datetime | None:
        """The next moment clerks are at work (now, if they are); None if no hours are configured."""
        local = now.astimezone(self.tz)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            for start, end in self.spans.get(day.weekday(), ()):
                begin = datetime.combine(day, start, self.tz)
                if datetime.combine(day, end, self.tz) > local:
                    return max(begin, local)
        return None

    def describe_next(self, now: datetime) -> str:
        """「11月27日（周五）09:00」 for the citizen."""
        when = self.next_open(now)
        if when is None:
            return "工作时间"
        return f"{when.month}月{when.day}日（{DAY_NAMES[when.weekday()]}）{when:%H:%M}"
