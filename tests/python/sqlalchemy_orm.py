"""SQLAlchemy 2 ORM through the gateway: create, multi-row insert (insertmanyvalues with
RETURNING), query, reflection. Prints one JSON object for the Rust test to check."""
import json
import sys

from sqlalchemy import Integer, String, create_engine, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

port, token, ca, resource = sys.argv[1:5]
engine = create_engine(
    f"postgresql+psycopg2://alice:{token}@127.0.0.1:{port}/{resource}?sslmode=require&sslrootcert={ca}"
)


class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "orm_people"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(100))


Base.metadata.drop_all(engine)
Base.metadata.create_all(engine)
with Session(engine) as s:
    people = [Person(name=f"p{i}", email=f"p{i}@example.com") for i in range(5)]
    s.add_all(people)
    s.commit()
    ids = [p.id for p in people]
    rows = [(p.id, p.name, p.email) for p in s.scalars(select(Person).order_by(Person.id)).all()]
columns = sorted(c["name"] for c in inspect(engine).get_columns("orm_people"))
print(json.dumps({"ids": ids, "rows": rows, "columns": columns}))
